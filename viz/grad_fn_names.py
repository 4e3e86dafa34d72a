"""Plain words for autograd node classes: AddmmBackward0 -> 'Linear (addmm) backward'.

Also says which nodes are bookkeeping (views, reshapes, copies, AccumulateGrad): they move or
reinterpret data without arithmetic, and the backward picture folds them unless --full.
"""

from __future__ import annotations

import re

_WORDS = {
    "Addmm": "Linear (addmm)", "Mm": "matrix multiply (mm)", "Bmm": "batched matmul (bmm)",
    "Baddbmm": "batched matmul + add (baddbmm)", "Addbmm": "batched matmul + add", "Mv": "matrix-vector",
    "Dot": "dot product", "Linear": "Linear", "Matmul": "matmul",
    "Convolution": "Convolution", "ConvolutionBackward": "Convolution (second order)",
    "NativeBatchNorm": "BatchNorm", "CudnnBatchNorm": "BatchNorm",
    "NativeLayerNorm": "LayerNorm", "NativeGroupNorm": "GroupNorm", "RmsNorm": "RMSNorm",
    "Relu": "ReLU", "LeakyRelu": "LeakyReLU", "Prelu": "PReLU", "PreluKernel": "PReLU", "Elu": "ELU",
    "Gelu": "GELU", "Silu": "SiLU", "Sigmoid": "Sigmoid", "Tanh": "Tanh", "Softplus": "Softplus",
    "Hardtanh": "Hardtanh", "Mish": "Mish", "Threshold": "Threshold (ReLU)",
    "Softmax": "Softmax", "LogSoftmax": "LogSoftmax", "Exp": "exp", "Log": "log", "Sqrt": "sqrt",
    "Rsqrt": "1/sqrt", "Pow": "power", "Neg": "negate", "Abs": "abs", "Reciprocal": "reciprocal",
    "Add": "add", "Sub": "subtract", "Rsub": "subtract", "Mul": "multiply", "Div": "divide",
    "Mean": "mean", "Sum": "sum", "Max": "max", "Min": "min", "Amax": "max", "Norm": "norm",
    "Cat": "concat", "Stack": "stack", "Where": "select by mask (where)",
    "MaskedFill": "masked fill", "Clamp": "clamp", "ClampMin": "clamp (min)",
    "Embedding": "Embedding lookup", "EmbeddingDense": "Embedding lookup",
    "AvgPool1D": "average pool", "AvgPool2D": "average pool", "AdaptiveAvgPool2D": "adaptive average pool",
    "AdaptiveAvgPool1D": "adaptive average pool", "MaxPool2DWithIndices": "max pool",
    "MaxPool1DWithIndices": "max pool", "MaxPool2D": "max pool",
    "NativeDropout": "Dropout", "Dropout": "Dropout", "FusedDropout": "Dropout",
    "ScaledDotProductEfficientAttention": "scaled dot-product attention",
    "ScaledDotProductFlashAttentionForCpu": "scaled dot-product attention",
    "ScaledDotProductFlashAttention": "scaled dot-product attention",
    "ScaledDotProductAttentionMath": "scaled dot-product attention",
    "ScaledDotProductCudnnAttention": "scaled dot-product attention",
    "NllLoss": "NLL loss", "NllLoss2D": "NLL loss", "MseLoss": "MSE loss", "L1Loss": "L1 loss",
    "HuberLoss": "Huber loss", "SmoothL1Loss": "smooth L1 loss", "BinaryCrossEntropy": "BCE loss",
    "BinaryCrossEntropyWithLogits": "BCE-with-logits loss",
    "MkldnnRnnLayer": "RNN layer", "MkldnnRnnLayerBackward": "RNN layer",
    "CudnnRnn": "RNN (cuDNN)", "Lstm": "LSTM", "Gru": "GRU",
    "RnnTanh": "RNN (tanh)", "RnnRelu": "RNN (relu)", "LstmCell": "LSTM cell", "GruCell": "GRU cell",
    "Cumsum": "cumulative sum", "Var": "variance", "Std": "std", "Cdist": "pairwise distance",
    "AccumulateGrad": "accumulate gradient into leaf",
    # bookkeeping
    "View": "view", "Reshape": "reshape", "ReshapeAlias": "reshape", "UnsafeView": "view",
    "Expand": "broadcast (expand)", "T": "transpose", "Transpose": "transpose",
    "Permute": "permute", "Squeeze": "squeeze", "Unsqueeze": "unsqueeze", "Clone": "copy",
    "ToCopy": "dtype/device copy", "Alias": "alias", "AsStrided": "strided view",
    "Slice": "slice", "Select": "select", "Split": "split", "SplitWithSizes": "split",
    "Unbind": "unbind", "Chunk": "chunk", "Detach": "detach", "Contiguous": "contiguous copy",
    "ExpandAs": "broadcast (expand)", "Flatten": "flatten", "Unflatten": "unflatten",
    "UnsafeSplit": "split", "Narrow": "narrow", "Copy": "copy", "Copysign": "copysign",
}

BOOKKEEPING = {
    "View", "Reshape", "ReshapeAlias", "UnsafeView", "Expand", "ExpandAs", "T", "Transpose", "Permute",
    "Squeeze", "Unsqueeze", "Clone", "ToCopy", "Alias", "AsStrided", "Slice", "Select", "Split",
    "SplitWithSizes", "UnsafeSplit", "Unbind", "Chunk", "Detach", "Contiguous", "Flatten", "Unflatten",
    "Narrow", "Copy", "AccumulateGrad",
}

_SUFFIX = re.compile(r"Backward\d*$")


def stem(kind: str) -> str:
    """'AddmmBackward0' -> 'Addmm'; 'SqueezeBackward1' -> 'Squeeze'; 'AccumulateGrad' unchanged."""
    return _SUFFIX.sub("", kind) or kind


def plain_name(kind: str) -> str:
    """What an autograd node computes, in plain words, ending in 'backward'."""
    if kind == "AccumulateGrad":
        return _WORDS[kind]
    s = stem(kind)
    if s in _WORDS:
        return f"{_WORDS[s]} backward"
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", s).lower()  # split CamelCase
    return f"{words} backward"


def is_bookkeeping(kind: str) -> bool:
    return stem(kind) in BOOKKEEPING
