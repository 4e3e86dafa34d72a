"""ONNX: onnx_export (torch module -> verified single-file ONNX), verify (the checks a file must pass),
naming / metadata / rnn / signature (its parts), predict / inputs / runtime (run a file or a spec on
.npy/.npz/.csv inputs), bench (eager vs torch.compile vs onnxruntime). From the core it reads the spec,
its graphs and built modules, and writes through builder.core.io_utils (atomic writes); the CLI fills the
module's weights (builder.weights.sources). Pictures live in the separate package `viz`: neither imports
the other."""
