"""`build serve MODEL.onnx | --run DIR [--host 127.0.0.1 --port 8000 --workers N]`: the model behind HTTP on
the Open Inference Protocol (KServe v2, Triton's) and a plain JSON /predict (export/serve/). Loopback only."""
from __future__ import annotations

import ipaddress
import os
import signal
import socket
import sys
import tempfile
from pathlib import Path

from builder.core.errors import UserError

WORKER_START_S = 120  # a worker process imports torch and loads the model before it answers uvicorn


def register(sub):
    p = sub.add_parser("serve", help="serve an exported model over HTTP (KServe v2 / Triton protocol, and /predict)")
    p.add_argument("model", metavar="MODEL.onnx", nargs="?", help="an exported ONNX file (or give --run DIR)")
    p.add_argument("--run", metavar="DIR", help="a training run folder: its spec and weights, exported on start")
    p.add_argument("--network", metavar="NAME", help="with --run: which network of a multi-network spec")
    p.add_argument("--name", help="the model's name in URLs (default: the spec's name, else the file's)")
    p.add_argument("--host", default="127.0.0.1", help="loopback address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="server processes (default 1)")
    p.add_argument("--max-batch", type=int, default=32, metavar="N",
                   help="most rows run together from concurrent requests (default 32)")
    p.add_argument("--max-delay-ms", type=float, default=2.0, metavar="MS",
                   help="how long a request waits for others to batch with (default 2)")
    p.add_argument("--provider", default="cpu", choices=["cpu", "cuda", "auto"],
                   help="onnxruntime execution provider (default cpu; auto: CUDA when onnxruntime-gpu and a GPU "
                   "are present)")
    p.add_argument("--threads", type=int, metavar="N", help="onnxruntime threads per process (default: its own)")
    p.set_defaults(func=run)


def check_loopback(host: str) -> str:
    """Only this machine may connect: a loopback address (or `localhost`), never a public one."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        if ipaddress.ip_address(host).is_loopback:
            return host
    except ValueError:
        pass
    raise UserError(f"--host {host}: build serve listens on loopback addresses only (127.0.0.1, ::1, localhost)")


def check_port(host: str, port: int) -> None:
    if not 0 < port < 65536:
        raise UserError(f"--port {port}: expected 1..65535")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise UserError(f"--port {port}: cannot listen on {host}:{port} ({e.strerror or e})") from None


def export_run(run_dir, folder: Path, network: str | None = None) -> Path:
    """The run's network (its spec and best weights, preparation inside) exported to `folder`."""
    from export import metadata
    from export.onnx_export import export_onnx

    from builder import load
    from builder.data import tokenizer
    from builder.training.entry import _spec_source
    from builder.training.runlog import read_resolved, run_params
    from builder.weights.sources import trained_network

    resolved = read_resolved(run_dir)
    spec = load(_spec_source(run_dir, resolved), overrides=run_params(run_dir))
    net = spec.network(network)
    module, checkpoint = trained_network(spec, net.name, run=run_dir)
    out = folder / f"{spec.name}.onnx"
    export_onnx(module, out, spec=spec, network=net.name, labels=metadata.class_labels(spec, checkpoint),
                tokenizer=tokenizer.find(None, run_dir, checkpoint), data=metadata.data_record(checkpoint, module))
    return out


def run(args):
    import onnx
    import uvicorn
    from export import triton
    from export.serve.app import CONFIG_ENV, ServeConfig, config_json, make_app

    if bool(args.model) == bool(args.run):
        raise UserError("give an exported MODEL.onnx or --run DIR (one of them)")
    if args.network and not args.run:
        raise UserError("--network goes with --run DIR (an .onnx file holds one network)")
    host = check_loopback(args.host)
    if args.workers < 1 or args.max_batch < 1 or not args.max_delay_ms >= 0:
        raise UserError("--workers and --max-batch must be at least 1, --max-delay-ms 0 or more")
    check_port(host, args.port)
    with tempfile.TemporaryDirectory(prefix="build-serve-") as tmp:
        path = Path(args.model) if args.model else export_run(args.run, Path(tmp), args.network)
        if not path.is_file():
            raise UserError(f"{path}: no such ONNX file")
        name = args.name
        if not name:
            try:
                props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
            except Exception as e:  # protobuf's DecodeError and friends
                raise UserError(f"{path}: not an ONNX model ({type(e).__name__})") from None
            name = props.get("builder.spec") or path.stem
        cfg = ServeConfig(str(path.resolve()), triton.model_name(name), args.max_batch, args.max_delay_ms, args.threads,
                          provider=args.provider)
        app = make_app(cfg)  # loads the model here: a bad file is a one-line error before listening
        print(f"serving '{cfg.name}' ({path}) on http://{host}:{args.port} with {args.workers} worker(s): "
              f"/v2/models/{cfg.name}/infer (KServe v2), /predict (plain JSON); Ctrl-C stops", file=sys.stderr)
        options = dict(host=host, port=args.port, log_level="warning", access_log=False)
        # uvicorn re-raises the SIGTERM it stopped on; as SystemExit here the exported --run file is removed
        signal.signal(signal.SIGTERM, _stop)
        if args.workers == 1:
            uvicorn.run(app, **options)
        else:
            os.environ[CONFIG_ENV] = config_json(cfg)
            uvicorn.run("export.serve.app:make_app", factory=True, workers=args.workers,
                        timeout_worker_healthcheck=WORKER_START_S, **options)
    return 0


def _stop(signum, frame):
    raise SystemExit(0)
