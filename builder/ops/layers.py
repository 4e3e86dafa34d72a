"""torch.nn layers: their inferred sizes and shape rules."""
from __future__ import annotations

from torch import nn

from builder.shapes import rules as S
from builder.shapes.rules import ShapeError
from builder.ops import modules as M
from builder.ops.adaptive import AdaptiveAvgPool
from builder.ops.registry import InferContext, OpDef, register
from builder.ops.registry import public_args as _public


def _tuple(v, n):
    if isinstance(v, (list, tuple)):
        if len(v) != n:
            raise ShapeError(f"expected {n} values, got {list(v)}")
        return tuple(v)
    return (v,) * n


def _rank(ctx: InferContext, *ranks, what=None):
    shape = ctx.shapes[0]
    if len(shape) not in ranks:
        want = " or ".join(f"{r}-D" for r in ranks)
        raise ShapeError(f"{what or 'this op'} expects a {want} input, got {len(shape)}-D {S.fmt(shape)}")
    return shape


def _numel(shape):
    return S.numel(shape)


def _prod(xs):
    out = 1
    for x in xs:
        out *= x
    return out


def layer(name, cls, infer, inferred=(), required=(), macs=None, build=None, in_dtype="float", **kw):
    return register(OpDef(name=name, infer=infer, torch_class=cls, inferred=inferred, required=required,
                          macs=macs, build=build or (lambda a, cls=cls: cls(**_public(a))), in_dtype=in_dtype,
                          **kw))


# ---- dense ---------------------------------------------------------------------------------------

def _linear(ctx):
    shape = ctx.shapes[0]
    if len(shape) < 1:
        raise ShapeError("Linear needs at least a 1-D input")
    last = shape[-1]
    if not S.is_static(last):
        raise ShapeError(f"Linear needs a static last dim to infer in_features, got {S.fmt(shape)}")
    given = ctx.args.get("in_features")
    if given is not None and given != last:
        raise ShapeError(f"in_features={given} but the input's last dim is {last} ({S.fmt(shape)})")
    ctx.args["in_features"] = last
    return shape[:-1] + (ctx.args["out_features"],)


layer("Linear", nn.Linear, _linear, inferred=("in_features",), required=("out_features",),
      macs=lambda ctx, out: _numel(out["out"]) * ctx.args["in_features"])


def _bilinear(ctx):
    a, b = ctx.shapes
    ctx.args["in1_features"], ctx.args["in2_features"] = a[-1], b[-1]
    if not S.same_shape(a[:-1], b[:-1]):
        raise ShapeError(f"Bilinear inputs must agree except in the last dim: {S.fmt(a)} and {S.fmt(b)}")
    return a[:-1] + (ctx.args["out_features"],)


layer("Bilinear", nn.Bilinear, _bilinear, inferred=("in1_features", "in2_features"),
      required=("out_features",), arity=(2, 2),
      macs=lambda ctx, out: _numel(out["out"]) * ctx.args["in1_features"] * ctx.args["in2_features"])


# ---- convolution and pooling --------------------------------------------------------------------

def _conv(nd, transposed=False):
    def infer(ctx):
        shape = _rank(ctx, nd + 2, nd + 1, what=f"Conv{nd}d")
        batched = len(shape) == nd + 2
        cin = shape[1 if batched else 0]
        if not S.is_static(cin):
            raise ShapeError(f"the channel dim must be static to infer in_channels, got {S.fmt(shape)}")
        ctx.args["in_channels"] = cin
        groups = ctx.args.get("groups", 1)
        if cin % groups:
            raise ShapeError(f"in_channels={cin} is not divisible by groups={groups}")
        k = _tuple(ctx.args["kernel_size"], nd)
        s = _tuple(ctx.args.get("stride", 1), nd)
        p = ctx.args.get("padding", 0)
        d = _tuple(ctx.args.get("dilation", 1), nd)
        spatial = shape[-nd:]
        if p == "causal":  # left padding of dilation * (kernel - 1): step t sees only steps <= t
            if nd != 1 or transposed:
                raise ShapeError("padding: causal is for Conv1d (left padding of a sequence)")
            out = (S.window_out(S.add(spatial[0], d[0] * (k[0] - 1)), k[0], s[0], 0, d[0]),)
        elif p == "same":
            out = spatial
        elif p == "valid":
            out = tuple(S.window_out(n, k[i], s[i], 0, d[i]) for i, n in enumerate(spatial))
        elif transposed:
            p = _tuple(p, nd)
            op = _tuple(ctx.args.get("output_padding", 0), nd)
            out = tuple(S.transpose_out(n, k[i], s[i], p[i], op[i], d[i]) for i, n in enumerate(spatial))
        else:
            p = _tuple(p, nd)
            out = tuple(S.window_out(n, k[i], s[i], p[i], d[i]) for i, n in enumerate(spatial))
        lead = shape[:1] if batched else ()
        return lead + (ctx.args["out_channels"],) + out
    return infer


def _conv_macs(nd):
    def macs(ctx, out):
        k = _prod(_tuple(ctx.args["kernel_size"], nd))
        return _numel(out["out"]) * k * ctx.args["in_channels"] // ctx.args.get("groups", 1)
    return macs


layer("Conv1d", nn.Conv1d, _conv(1), inferred=("in_channels",), required=("out_channels", "kernel_size"),
      macs=_conv_macs(1), build=lambda a: M.CausalConv1d(**{**_public(a), "padding": 0})
      if a.get("padding") == "causal" else nn.Conv1d(**_public(a)))
layer("Conv2d", nn.Conv2d, _conv(2), inferred=("in_channels",), required=("out_channels", "kernel_size"),
      macs=_conv_macs(2))
layer("ConvTranspose1d", nn.ConvTranspose1d, _conv(1, True), inferred=("in_channels",),
      required=("out_channels", "kernel_size"), macs=lambda ctx, out: _numel(ctx.shapes[0]) *
      _prod(_tuple(ctx.args["kernel_size"], 1)) * ctx.args["out_channels"] // ctx.args.get("groups", 1))
layer("ConvTranspose2d", nn.ConvTranspose2d, _conv(2, True), inferred=("in_channels",),
      required=("out_channels", "kernel_size"), macs=lambda ctx, out: _numel(ctx.shapes[0]) *
      _prod(_tuple(ctx.args["kernel_size"], 2)) * ctx.args["out_channels"] // ctx.args.get("groups", 1))


def _pool(nd):
    def infer(ctx):
        shape = _rank(ctx, nd + 2, nd + 1, what=f"pooling over {nd}-D")
        k = _tuple(ctx.args["kernel_size"], nd)
        stride = ctx.args.get("stride")
        s = _tuple(stride if stride is not None else k, nd) if stride is not None else k
        p = _tuple(ctx.args.get("padding", 0), nd)
        d = _tuple(ctx.args.get("dilation", 1), nd)
        ceil = ctx.args.get("ceil_mode", False)
        for i in range(nd):
            if p[i] * 2 > k[i]:
                raise ShapeError(f"padding {p[i]} should be at most half of kernel_size {k[i]}")
        out = tuple(S.window_out(n, k[i], s[i], p[i], d[i], ceil) for i, n in enumerate(shape[-nd:]))
        return shape[:-nd] + out
    return infer


for _nd in (1, 2):
    layer(f"MaxPool{_nd}d", getattr(nn, f"MaxPool{_nd}d"), _pool(_nd), required=("kernel_size",))
    layer(f"AvgPool{_nd}d", getattr(nn, f"AvgPool{_nd}d"), _pool(_nd), required=("kernel_size",))


def _adaptive(nd):
    def infer(ctx):
        shape = _rank(ctx, nd + 2, nd + 1, what=f"AdaptiveAvgPool{nd}d")
        size = _tuple(ctx.args["output_size"], nd)
        return shape[:-nd] + tuple(shape[-nd + i] if v is None else v for i, v in enumerate(size))
    return infer


layer("AdaptiveAvgPool1d", nn.AdaptiveAvgPool1d, _adaptive(1), required=("output_size",),
      build=lambda a: AdaptiveAvgPool(a["output_size"], 1),
      onnx=('an output size other than 1 pools through averaging matrices built from the input size, so the file is '
            'exact at every size'))
layer("AdaptiveAvgPool2d", nn.AdaptiveAvgPool2d, _adaptive(2), required=("output_size",),
      build=lambda a: AdaptiveAvgPool(a["output_size"], 2),
      onnx=('an output size other than 1 pools through averaging matrices built from the input size, so the file is '
            'exact at every size'))
layer("AdaptiveMaxPool2d", nn.AdaptiveMaxPool2d, _adaptive(2), required=("output_size",))


# ---- normalisation ------------------------------------------------------------------------------

def _batchnorm(ranks):
    def infer(ctx):
        shape = _rank(ctx, *ranks, what=f"BatchNorm over {'/'.join(str(r) for r in ranks)}-D")
        c = shape[1] if len(shape) > 1 else shape[0]
        if len(shape) == 1 or not S.is_static(c):
            raise ShapeError(f"BatchNorm needs a static channel dim 1, got {S.fmt(shape)}")
        ctx.args["num_features"] = c
        return shape
    return infer


layer("BatchNorm1d", nn.BatchNorm1d, _batchnorm((2, 3)), inferred=("num_features",))
layer("BatchNorm2d", nn.BatchNorm2d, _batchnorm((4,)), inferred=("num_features",))


def _layernorm(ctx):
    shape = ctx.shapes[0]
    ns = ctx.args.get("normalized_shape", -1)
    if ns in (None, -1, [-1]):
        ns = [shape[-1]]
    ns = list(ns) if isinstance(ns, (list, tuple)) else [ns]
    if tuple(ns) != tuple(shape[-len(ns):]):
        raise ShapeError(f"normalized_shape {ns} does not match the trailing dims of {S.fmt(shape)}")
    if not all(S.is_static(d) for d in ns):
        raise ShapeError(f"LayerNorm needs static trailing dims, got {S.fmt(shape)}")
    ctx.args["normalized_shape"] = ns
    return shape


layer("LayerNorm", nn.LayerNorm, _layernorm, inferred=("normalized_shape",))


def _groupnorm(ctx):
    shape = _rank(ctx, 2, 3, 4, 5, what="GroupNorm")
    ctx.args["num_channels"] = shape[1]
    if not S.is_static(ctx.args["num_groups"]) or ctx.args["num_groups"] < 1:
        raise ShapeError(f"num_groups must be a positive integer, got {ctx.args['num_groups']!r}")
    if shape[1] % ctx.args["num_groups"]:
        raise ShapeError(f"num_channels {shape[1]} is not divisible by num_groups {ctx.args['num_groups']}")
    return shape


layer("GroupNorm", nn.GroupNorm, _groupnorm, inferred=("num_channels",), required=("num_groups",))


# ---- elementwise and activations ----------------------------------------------------------------

def _same(ctx):
    return ctx.shapes[0]


for _name in ("ReLU", "LeakyReLU", "ELU", "SiLU", "Sigmoid", "Tanh", "Softplus", "Dropout",
              "Identity", "Hardtanh", "Mish", "Tanhshrink", "Softsign", "ReLU6", "SELU", "CELU"):
    layer(_name, getattr(nn, _name), _same, category="activation" if _name not in ("Dropout", "Identity")
          else "layer", in_dtype=None if _name == "Identity" else "float")


def _gelu(ctx):
    if ctx.args.get("approximate", "none") not in ("none", "tanh"):
        raise ShapeError(f"approximate must be 'none' or 'tanh', got {ctx.args['approximate']!r}")
    return ctx.shapes[0]


layer("GELU", nn.GELU, _gelu, category="activation")


def _prelu(ctx):
    n = ctx.args.get("num_parameters", 1)
    shape = ctx.shapes[0]
    if n != 1 and (len(shape) < 2 or shape[1] != n):
        raise ShapeError(f"PReLU num_parameters={n} must be 1 or the channel dim of {S.fmt(shape)}")
    return shape


layer("PReLU", nn.PReLU, _prelu)


def _softmax(ctx):
    shape = ctx.shapes[0]
    dim = ctx.args.get("dim")
    if dim is None:
        raise ShapeError("softmax needs an explicit dim (e.g. dim: -1)")
    S.norm_dim(dim, len(shape))
    return shape


layer("Softmax", nn.Softmax, _softmax, required=("dim",), category="activation")
layer("LogSoftmax", nn.LogSoftmax, _softmax, required=("dim",), category="activation")


# ---- shape layers -------------------------------------------------------------------------------

def _flatten(ctx):
    shape = ctx.shapes[0]
    start = S.norm_dim(ctx.args.get("start_dim", 1), len(shape), "start_dim")
    end = S.norm_dim(ctx.args.get("end_dim", -1), len(shape), "end_dim")
    if start > end:
        raise ShapeError(f"start_dim {start} is after end_dim {end}")
    return shape[:start] + (S.prod(shape[start:end + 1]),) + shape[end + 1:]


layer("Flatten", nn.Flatten, _flatten, in_dtype=None, category="shape")


def _unflatten(ctx):
    shape = ctx.shapes[0]
    dim = S.norm_dim(ctx.args["dim"], len(shape))
    sizes = list(ctx.args["unflattened_size"])
    n = shape[dim]
    if sizes.count(-1) > 1:
        raise ShapeError("at most one -1 in unflattened_size")
    known = _prod(s for s in sizes if s != -1)
    out = list(sizes)
    if -1 in sizes:
        out[sizes.index(-1)] = S.exact_div(n, known, f"cannot unflatten dim {dim} into {sizes}")
        if S.is_static(n):  # nn.Unflatten keeps the -1 for a symbolic dim and resolves it per call
            sizes = out
    elif not S.same(known, n):
        raise S.mismatch(f"cannot unflatten dim of size {n} into {sizes} (product {known})", n, known)
    ctx.args["unflattened_size"] = sizes
    return shape[:dim] + tuple(out) + shape[dim + 1:]


layer("Unflatten", nn.Unflatten, _unflatten, required=("dim", "unflattened_size"), in_dtype=None,
      category="shape")


# ---- embeddings ---------------------------------------------------------------------------------

def _embedding(ctx):
    return ctx.shapes[0] + (ctx.args["embedding_dim"],)


layer("Embedding", nn.Embedding, _embedding, required=("num_embeddings", "embedding_dim"), in_dtype="int")


def _rbf(ctx):
    shape = ctx.shapes[0]
    ctx.args["in_features"] = shape[-1]
    return shape[:-1] + (ctx.args["out_features"],)


register(OpDef("RBF", _rbf, build=lambda a: M.RBF(**a), arg_names=("out_features", "squared", "in_features"),
               required=("out_features",), inferred=("in_features",),
               macs=lambda ctx, out: _numel(out["out"]) * ctx.args["in_features"],
               doc="LeNet-5's Euclidean RBF output units: y_i = sum_j (x_j - w_ij)^2",
               shape_doc='[..., F] -> [..., out_features]'))
