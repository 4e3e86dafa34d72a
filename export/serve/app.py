"""The FastAPI app of `build serve`: one exported ONNX model on the Open Inference Protocol, and /predict.

    GET  /v2/health/live, /v2/health/ready       200 while serving
    GET  /v2                                      server metadata
    GET  /v2/models/<name>[/versions/1]           model metadata (inputs, outputs, datatypes, shapes)
    GET  /v2/models/<name>[/versions/1]/ready     200 when loaded
    POST /v2/models/<name>[/versions/1]/infer     tensors in, tensors out (JSON or binary tensor data)
    GET  /v2/models/<name>[/versions/1]/stats     inference_count (rows) and execution_count (model runs)
    POST /predict                                 the training layout in, class names and probabilities
                                                  (or values in data units) out:
         {"rows": [{"column": value, ...}]}       a model trained on a CSV (its columns by name)
         {"text": "..."} or {"texts": [...]}      a language model with its vocabulary (next token)
         {"inputs": {"name": [[...]]}}            arrays, by input name

Every input goes through export/inputs.py (the checks and the CSV encoding `build predict` uses). A
request the model cannot take is a 4xx whose JSON `error` is one line; nothing a request holds stops the
server. Bodies are bounded (`max_body`).
"""
from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass

import numpy as np
from builder.core.errors import UserError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import inputs as model_inputs
from .. import metadata, predict
from . import protocol
from .batching import Batcher

CONFIG_ENV = "BUILDER_SERVE_CONFIG"  # how uvicorn's worker processes learn what to serve


@dataclass
class ServeConfig:
    model: str  # the ONNX file
    name: str
    max_batch: int = 32
    max_delay_ms: float = 2.0
    threads: int | None = None
    max_body: int = 64 * 2**20
    provider: str = "cpu"


class HTTPError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class ServedModel:
    """The model, its runner (export/predict.py) and the batching queue in front of it."""

    def __init__(self, cfg: ServeConfig):
        self.cfg = cfg
        self.name = cfg.name
        self.runner = predict.OnnxRunner(cfg.model, provider=cfg.provider, threads=cfg.threads)
        tensors = self.runner.inputs + self.runner.outputs
        self.batched = all(t.shape and not isinstance(t.shape[0], int) for t in tensors)
        self.batcher = Batcher(self.runner.run, cfg.max_batch, cfg.max_delay_ms / 1000, self.batched)
        from builder.data.tokenizer import from_metadata
        self.tokenizer = from_metadata(self.runner.meta)
        self.in_data_units = bool((self.runner.meta.get("data") or {}).get("outputs_in_data_units"))

    def metadata(self) -> dict:
        return {"name": self.name, "versions": ["1"], "platform": "onnxruntime_onnx",
                "inputs": [protocol.tensor_metadata(i.name, i.dtype, i.shape) for i in self.runner.inputs],
                "outputs": [protocol.tensor_metadata(o.name, o.dtype, o.shape) for o in self.runner.outputs]}

    async def infer(self, arrays: dict[str, np.ndarray], source: str = "request") -> dict[str, np.ndarray]:
        names = [i.name for i in self.runner.inputs]
        missing = [n for n in names if n not in arrays]
        extra = [n for n in arrays if n not in names]
        if missing or extra:
            raise UserError(f"{source}: the model takes inputs {', '.join(names)}"
                            + (f"; missing {', '.join(missing)}" if missing else "")
                            + (f"; it has no input {', '.join(extra)}" if extra else ""))
        feed = model_inputs.conform(arrays, self.runner.inputs, source)
        limit = predict.batch_limit(self.runner)
        if limit is not None and len(next(iter(feed.values()))) != limit:
            raise UserError(f"{source}: the model takes batches of exactly {limit} samples")
        outputs = await self.batcher.submit(feed)
        return dict(zip(self.runner.output_names, outputs))

    def stats(self) -> dict:
        b = self.batcher
        return {"model_stats": [{"name": self.name, "version": "1", "inference_count": b.rows,
                                 "execution_count": b.executions, "request_count": b.inferences,
                                 "largest_batch": b.largest}]}


async def plain_predict(model: ServedModel, body: dict) -> dict:
    """/predict: the training layout in, labels with probabilities (or values) out."""
    runner, top_k = model.runner, body.get("top_k", 5)
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise UserError(f"top_k must be a whole number >= 1, got {top_k!r}"[:120])
    if "rows" in body:
        if not runner.layout:
            raise UserError("this model was not trained on a CSV file (no column layout): send 'inputs'")
        arrays, _ = model_inputs.read_rows(body["rows"], runner.layout, runner.inputs)
        first = next(iter((await model.infer(arrays)).values()))
    elif "images" in body:
        arrays = model_inputs.read_images(body["images"], runner.layout, runner.inputs)
        first = next(iter((await model.infer(arrays)).values()))
    elif "text" in body or "texts" in body:
        texts = [body["text"]] if "text" in body else body["texts"]
        if model.tokenizer is None or len(runner.inputs) != 1:
            raise UserError("this model has no vocabulary for text: send 'inputs'")
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
            raise UserError("'text' must be a non-empty string ('texts': a non-empty list of them)")
        rows = []
        for text in texts:  # each text its own length: one request each, batched when lengths agree
            ids = np.asarray([model.tokenizer.encode(text)], dtype=np.int64)
            rows.append(next(iter((await model.infer({runner.inputs[0].name: ids}, "text")).values()))[0])
        return {"model": model.name, "predictions": [_next_token(r, runner.labels, top_k) for r in rows]}
    elif "inputs" in body and isinstance(body["inputs"], dict):
        arrays, kinds = {}, {i.name: np.dtype(i.dtype).kind for i in runner.inputs}
        for name, value in body["inputs"].items():
            try:  # JSON has one kind of number: 0 feeds a float input as 0.0
                arrays[name] = np.asarray(value, dtype=np.float64 if kinds.get(name) == "f" else None)
            except (ValueError, TypeError):
                raise UserError(f"input '{name}': not a rectangular array of numbers") from None
            if arrays[name].dtype.kind not in "biuf":
                raise UserError(f"input '{name}': not an array of numbers")
        first = next(iter((await model.infer(arrays)).values()))
    else:
        raise UserError("send {'rows': [{column: value}]}, {'images': [base64 file]}, {'text': ...} or "
                        "{'inputs': {name: array}}")
    if predict.is_classifier(first):
        return {"model": model.name, "predictions": [_classes(r, runner.labels) for r in first]}
    if first.ndim == 3 and first.shape[2] > 1 and first.dtype.kind == "f":
        return {"model": model.name, "predictions": [_next_token(r, runner.labels, top_k) for r in first]}
    values = first.reshape(len(first), -1) if first.ndim > 1 else first[:, None]
    out = {"model": model.name, "predictions": [row.tolist() if len(row) > 1 else row[0].item() for row in values]}
    if model.in_data_units:
        out["units"] = "data"
    return out


def _classes(scores: np.ndarray, labels) -> dict:
    idx, probs = predict.top_k(scores[None], scores.shape[0])
    names = [predict.class_name(labels, int(i)) for i in idx[0]]
    return {"label": names[0], "probabilities": {n: round(float(p), 6) for n, p in zip(names, probs[0])}}


def _next_token(logits: np.ndarray, labels, k: int) -> dict:
    idx, probs = predict.top_k(logits[-1][None], k)
    return {"next": [{"token": predict.class_name(labels, int(i)), "probability": round(float(p), 6)}
                     for i, p in zip(idx[0], probs[0])]}


def make_app(cfg: ServeConfig | None = None):
    """The FastAPI app serving `cfg` (or the config in $BUILDER_SERVE_CONFIG: uvicorn's workers)."""
    if cfg is None:
        from builder.text.readers import parse_json_text
        cfg = ServeConfig(**parse_json_text(os.environ[CONFIG_ENV], CONFIG_ENV))
    model = ServedModel(cfg)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        model.batcher.close()

    app = FastAPI(title=f"build serve: {cfg.name}", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.model = model

    def error(status: int, message: str):
        return JSONResponse({"error": " ".join(str(message).split())[:500]}, status_code=status)

    @app.exception_handler(HTTPError)
    async def _http(request, e: HTTPError):
        return error(e.status, str(e))

    @app.exception_handler(StarletteHTTPException)
    async def _routing(request, e: StarletteHTTPException):  # no such route (404), wrong method (405)
        return error(e.status_code, e.detail if isinstance(e.detail, str) else "bad request")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, e: RequestValidationError):
        first = (e.errors() or [{}])[0]
        return error(400, f"{'.'.join(str(x) for x in first.get('loc', ()))}: {first.get('msg', 'invalid')}")

    @app.exception_handler(UserError)
    async def _user(request, e: UserError):
        return error(400, str(e))

    @app.exception_handler(Exception)
    async def _other(request, e: Exception):  # a bug of ours: a 500, and the server goes on
        return error(500, f"internal error: {type(e).__name__}")

    async def body_of(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > cfg.max_body:
            raise HTTPError(413, f"the request body ({int(declared):,} bytes) is larger than {cfg.max_body:,} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > cfg.max_body:
                raise HTTPError(413, f"the request body is larger than {cfg.max_body:,} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def check(name: str, version: str | None = None) -> ServedModel:
        if name != model.name:
            raise HTTPError(404, f"no model '{name}' here (this server serves '{model.name}')")
        if version not in (None, "", "1"):
            raise HTTPError(404, f"model '{name}' has only version 1, not '{version}'")
        return model

    @app.get("/v2/health/live")
    @app.get("/v2/health/ready")
    async def health():
        return Response(status_code=200)

    @app.get("/v2")
    async def server_metadata():
        return {"name": "build serve", "version": metadata.builder_version(),
                "extensions": ["binary_tensor_data", "statistics"]}

    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    async def model_metadata(name: str, version: str | None = None):
        return check(name, version).metadata()

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def model_ready(name: str, version: str | None = None):
        check(name, version)
        return Response(status_code=200)

    @app.get("/v2/models/{name}/stats")
    @app.get("/v2/models/{name}/versions/{version}/stats")
    async def stats(name: str, version: str | None = None):
        return check(name, version).stats()

    @app.post("/v2/models/{name}/infer")
    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def infer(name: str, request: Request, version: str | None = None):
        served = check(name, version)
        head, binary = protocol.split_body(await body_of(request),
                                           request.headers.get("inference-header-content-length"))
        arrays = protocol.decode_inputs(head, binary)
        wanted, as_binary = protocol.requested_outputs(head, served.runner.output_names)
        outputs = await served.infer(arrays)
        body, headers = protocol.encode_response(served.name, head.get("id"), {n: outputs[n] for n in wanted},
                                                 as_binary)
        return Response(content=body, headers={k: v for k, v in headers.items() if k != "Content-Type"},
                        media_type=headers["Content-Type"])

    @app.post("/predict")
    async def plain(request: Request):
        return await plain_predict(model, protocol.load_json(await body_of(request)))

    return app


def config_json(cfg: ServeConfig) -> str:
    return json.dumps(asdict(cfg))
