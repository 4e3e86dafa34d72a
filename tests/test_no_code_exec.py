"""Nothing a stranger hands us runs code: a malicious pickle as a checkpoint (--resume, --run, --weights,
convert-weights) is refused by torch.load(weights_only=True); garbage or truncated ONNX files are clean
errors; `use:` under --safe stays in the spec's folder (symlinks included); a spec cannot import a plug-in."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import builder
from builder.commands.cli import main
from builder.core.errors import SpecError

ROOT = Path(__file__).resolve().parents[1]


class Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_every_torch_load_and_np_load_in_the_code_base_is_safe():
    """The rule, checked on the source: torch.load only with weights_only=True, np.load never with pickles."""
    calls = []
    for path in [p for package in ("builder", "export", "viz") for p in (ROOT / package).rglob("*.py")]:
        text = path.read_text()
        for m in re.finditer(r"\b(torch\.load|np\.load|numpy\.load|pickle\.loads?)\(([^)]*)\)", text):
            calls.append((path.name, m.group(1), m.group(2)))
    assert {c[0] for c in calls if c[1] == "torch.load"} == {"checkpoint.py"}  # the one torch-file reader
    for name, fn, args in calls:
        assert not fn.startswith("pickle"), name
        if fn == "torch.load":
            assert "weights_only=True" in args, (name, args)
        else:
            assert "allow_pickle=True" not in args, (name, args)
            assert "allow_pickle=False" in args, (name, args)


def test_a_malicious_checkpoint_is_refused_everywhere(tmp_path, capsys):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pt"
    torch.save({"networks": {"model": {"head.weight": Payload(marker)}}}, evil)
    run_dir = tmp_path / "run"
    assert main(["train", "specs/xor_mlp.yaml", "--run-dir", str(run_dir), "--quiet", "--epochs", "1"]) == 0
    for name in ("last.pt", "best.pt"):
        (run_dir / name).write_bytes(evil.read_bytes())
    np.save(tmp_path / "x.npy", np.ones((2, 2), np.float32))
    capsys.readouterr()
    commands = [
        ["train", "--resume", str(run_dir), "--epochs", "2", "--quiet"],
        ["predict", "specs/xor_mlp.yaml", "--run", str(run_dir), "--input", str(tmp_path / "x.npy")],
        ["predict", "specs/xor_mlp.yaml", "--weights", str(evil), "--input", str(tmp_path / "x.npy")],
        ["export", "specs/xor_mlp.yaml", "--weights", str(evil), "-o", str(tmp_path / "m.onnx")],
        ["convert-weights", "specs/xor_mlp.yaml", "--from", str(evil), "-o", str(tmp_path / "c.pt")],
        ["viz", "specs/xor_mlp.yaml", "--view", "backward", "--weights", str(evil), "-o", str(tmp_path / "v.png")],
    ]
    for argv in commands:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "unsupported GLOBAL posix.system" in err[0] and "never code" in err[0], (argv, err)
    assert not marker.exists()
    assert not (tmp_path / "m.onnx").exists() and not (tmp_path / "c.pt").exists()


def test_garbage_or_truncated_onnx_files_are_clean_errors(tmp_path, capsys):
    good = tmp_path / "xor.onnx"
    assert main(["export", "specs/xor_mlp.yaml", "--random", "-o", str(good)]) == 0
    data = good.read_bytes()
    np.save(tmp_path / "x.npy", np.ones((2, 2), np.float32))
    bad = {"garbage.onnx": np.random.default_rng(0).bytes(4096), "truncated.onnx": data[: len(data) // 2],
           "empty.onnx": b"", "pickle.onnx": (tmp_path / "x.npy").read_bytes()}
    capsys.readouterr()
    for name, content in bad.items():
        (tmp_path / name).write_bytes(content)
        commands = [["predict", str(tmp_path / name), "--input", str(tmp_path / "x.npy")]]
        if name != "empty.onnx":  # an empty file is a valid, empty ModelProto: viz draws an empty picture
            commands.append(["viz", str(tmp_path / name), "-o", str(tmp_path / "v.png")])
        for argv in commands:
            assert main(argv) == 2, argv
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and str(tmp_path / name) in err[0], (argv, err)


def test_safe_use_cannot_leave_the_spec_folder(tmp_path):
    (tmp_path / "outside").mkdir()
    (tmp_path / "spec" / "sub").mkdir(parents=True)
    block = "spec: 1\nname: blk\nblocks:\n  mlp:\n    inputs: [x]\n    nodes:\n      l: {op: Linear, out_features: 4}\n"
    (tmp_path / "outside" / "blk.yaml").write_text(block)
    (tmp_path / "spec" / "sub" / "ok.yaml").write_text(block)
    (tmp_path / "spec" / "link.yaml").symlink_to(tmp_path / "outside" / "blk.yaml")
    (tmp_path / "spec" / "sub" / "nested.yaml").write_text("spec: 1\nname: n\nuse: [../../outside/blk.yaml]\n")
    main_spec = tmp_path / "spec" / "main.yaml"

    def load(use, safe=True):
        main_spec.write_text(f"spec: 1\nname: t\nuse: [{use}]\ninputs:\n  x: {{shape: [B, 2]}}\n"
                             "nodes:\n  h: {op: Linear, out_features: 2}\n")
        return builder.load(main_spec, safe=safe)

    for use in ("../outside/blk.yaml", str(tmp_path / "outside" / "blk.yaml"), "link.yaml", "sub/nested.yaml"):
        with pytest.raises(SpecError, match=r"is outside the spec's folder \(--safe\)"):
            load(use)
        if use != "sub/nested.yaml":
            load(use, safe=False)  # without --safe they resolve
    assert load("sub/ok.yaml").name == "t"


def test_a_spec_cannot_import_a_plugin(tmp_path):
    """Only --plugin MODULE and installed entry points import code; a spec naming a module does not."""
    marker = tmp_path / "PWNED"
    (tmp_path / "evilops.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    attempts = [
        "plugins: [evilops]\n",
        "plugin: evilops\n",
        "import: evilops\n",
        "use: [evilops]\n",
        "use: [evilops.py]\n",
        "nodes:\n  h: {op: evilops.Thing}\n",
        "nodes:\n  h: {op: 'evilops:Thing'}\n",
        "nodes:\n  h: {op: !!python/name:evilops.Thing }\n",
        "nodes:\n  h: !!python/object/apply:evilops.run []\n",
    ]
    script = (
        "import sys\nfrom builder.commands.cli import main\nfor text in sys.argv[2:]:\n"
        "    open(sys.argv[1], 'w').write(text)\n"
        "    code = main(['check', sys.argv[1]])\n"
        "    assert code == 2, (code, text)\n"
        "assert 'evilops' not in sys.modules\n"
    )
    spec_body = "spec: 1\nname: t\ninputs:\n  x: {shape: [B, 2]}\n"
    texts = [spec_body + a if "nodes" in a else spec_body + a + "nodes:\n  h: {op: Linear, out_features: 2}\n"
             for a in attempts]
    # the module sits in the spec's folder and on sys.path: importable, were anything to import it
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "s.yaml"), *texts], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    assert not marker.exists()
    # while --plugin does import it (the one door, opened by the user)
    out = subprocess.run([sys.executable, "-m", "builder.commands.cli", "--plugin", "evilops", "check", str(tmp_path / "s.yaml")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}"))
    assert marker.exists()
