"""`build serve`: an exported ONNX file behind HTTP (FastAPI + uvicorn) on the Open Inference Protocol
(KServe v2, what Triton Inference Server speaks) plus a plain JSON endpoint in the training data's layout.

    protocol.py   v2 requests and responses: JSON tensors and the binary tensor data extension
    batching.py   a queue that runs concurrent requests as one batch, up to a limit
    app.py        the routes, one-line 4xx errors, the plain /predict endpoint
"""
