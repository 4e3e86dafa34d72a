"""ONNX: onnx_export (torch module -> verified single-file ONNX), verify (the checks a file must pass),
naming / metadata / rnn / signature (its parts), predict / inputs / runtime (run a file or a spec on
.npy/.npz/.csv inputs), bench (eager vs torch.compile vs onnxruntime), weights (--run / --weights /
--random), files (atomic writes). Pictures live in the separate package `viz`."""
