"""onnxruntime sessions: which execution provider, how many threads, all graph optimisations on."""
from __future__ import annotations

import onnxruntime as ort
from builder.core.errors import UserError

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def cuda_available() -> bool:
    """onnxruntime-gpu with its CUDA provider, and a GPU torch can see."""
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return False
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:
        return False


def choose_provider(name: str = "auto") -> str:
    """'cpu' | 'cuda' | 'auto' -> an execution provider name; auto prefers CUDA when usable."""
    name = (name or "auto").lower()
    if name == "auto":
        return PROVIDERS["cuda"] if cuda_available() else PROVIDERS["cpu"]
    if name not in PROVIDERS:
        raise UserError(f"--provider {name}: expected cpu, cuda or auto")
    if name == "cuda" and not cuda_available():
        have = ", ".join(ort.get_available_providers())
        raise UserError(f"--provider cuda: onnxruntime's CUDA provider or a GPU is missing (available: {have}); "
                        "install onnxruntime-gpu on a machine with a GPU, or use --provider cpu")
    return PROVIDERS[name]


def session(path_or_bytes, provider: str = "cpu", threads: int | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: shape warnings of the exporter's outputs are ours to check
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    provider = choose_provider(provider) if provider in ("auto", "cpu", "cuda") else provider
    source = str(path_or_bytes) if not isinstance(path_or_bytes, (bytes, bytearray)) else path_or_bytes
    try:
        return ort.InferenceSession(source, sess_options=options, providers=[provider])
    except Exception as e:  # onnxruntime's own exception types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"onnxruntime cannot load {path_or_bytes if isinstance(source, str) else 'the model'}: "
                        f"{first}") from None


def provider_of(sess: ort.InferenceSession) -> str:
    return sess.get_providers()[0]
