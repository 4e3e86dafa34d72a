"""Export, verify, run and benchmark builder networks as ONNX (issue 5).

onnx_export.export_onnx   torch module -> verified single-file ONNX
verify                    the checks a file must pass before it is kept
predict                   run an ONNX file (onnxruntime) or a spec (torch) on .npy/.npz/.csv inputs
bench                     latency of torch eager, torch.compile and onnxruntime
"""
