"""Subcommands of `build`, in the order `build --help` lists them."""
COMMANDS = ["check", "summary", "code", "schema", "train", "export", "predict", "evaluate", "serve", "bench", "viz",
            "convert_weights", "demo", "generate", "sweep"]
