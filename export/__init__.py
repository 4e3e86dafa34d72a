"""Everything downstream of a built network that is not training.

ONNX (issue 5):  onnx_export (torch module -> verified single-file ONNX), verify (the checks a file
                 must pass), naming / metadata / rnn / signature (its parts), predict / inputs / runtime
                 (run a file or a spec on .npy/.npz/.csv inputs), bench (eager vs torch.compile vs
                 onnxruntime), weights (--run / --weights / --random), files (atomic writes).
Pictures (issue 6): viz_* , dot_render, autograd_walk, grad_* (see `build viz`).
"""
