"""Recurrent layers that keep a dynamic sequence length through torch.onnx.export (torch 2.13).

Two traps, both seen with torch 2.13:

- `nn.RNN` (aten.rnn_tanh / aten.rnn_relu) is decomposed by a Python loop over the time steps, so the
  export unrolls it and silently fixes the sequence length. `rnn_export_patches()` gives these ops a
  `while_loop` kernel while tracing (so shapes stay symbolic, as torch does for LSTM/GRU) and
  `TRANSLATIONS` maps them to the ONNX `RNN` operator.
- The exporter swaps in while_loop kernels for aten.lstm/aten.gru by assigning to `op.py_kernels`, which
  does not clear the op's dispatch cache: after the first LSTM/GRU call in a process the cached kernel
  wins, and a second export freezes the sequence length. The caches are cleared before and after.
"""
from __future__ import annotations

import contextlib

import torch
from onnxscript import opset18 as op
from torch._decomp.decompositions import _rnn_helper, gather_params
from torch._higher_order_ops.while_loop import while_loop

_KEYS = (torch._C.DispatchKey.CompositeImplicitAutograd, torch._C.DispatchKey.Autograd)


def _rnn_ops():
    return (torch.ops.aten.rnn_tanh.input, torch.ops.aten.rnn_relu.input)


def _cached_ops():
    return (torch.ops.aten.lstm.input, torch.ops.aten.gru.input) + _rnn_ops()


def clear_dispatch_caches() -> None:
    for rnn_op in _cached_ops():
        rnn_op._dispatch_cache.clear()


def _one_layer_while_loop(inp, hidden, params, has_biases, reverse=False, act=torch.tanh):
    """One RNN layer over (T, B, F) as a while_loop: h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)."""
    w_ih, w_hh = params[0], params[1]
    b_ih = params[2] if has_biases else None
    b_hh = params[3] if has_biases else None
    pre = torch.nn.functional.linear(inp, w_ih, b_ih)
    pre = pre.flip(0) if reverse else pre
    # while_loop rejects closure tensors that share storage (flattened RNN weights do)
    w_hh = w_hh.clone()
    b_hh = b_hh.clone() if b_hh is not None else None
    h0 = hidden.unsqueeze(0)
    out0 = torch.empty(pre.size(0), *h0.shape[1:], dtype=h0.dtype, device=h0.device)

    def cond_fn(i, out, h):
        return i < pre.size(0)

    def body_fn(idx, out, h):
        i = idx.item()
        torch._check_is_size(i)
        torch._check_is_size(i, max=pre.size(0) - 1)
        h = act(pre[i] + torch.nn.functional.linear(h, w_hh, b_hh))
        out = out.clone()
        out[i] = h.squeeze(0)
        return idx + 1, out, h

    _, out, h = while_loop(cond_fn, body_fn, [torch.tensor(0, dtype=torch.int64), out0, h0])
    return (out.flip(0) if reverse else out), h.squeeze(0)


def _while_loop_kernel(act):
    def kernel(input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first):
        params = gather_params(params, has_biases, False)

        def layer(*args, **kwargs):
            return _one_layer_while_loop(*args, act=act, **kwargs)

        out, finals = _rnn_helper(input, list(hx.unbind(0)), params, has_biases, num_layers, dropout,
                                  train, bidirectional, batch_first, layer)
        return out, torch.stack(finals, 0)
    return kernel


@contextlib.contextmanager
def rnn_export_patches():
    """While tracing: while_loop kernels for nn.RNN, and clean dispatch caches for every recurrent op."""
    kernels = {torch.ops.aten.rnn_tanh.input: _while_loop_kernel(torch.tanh),
               torch.ops.aten.rnn_relu.input: _while_loop_kernel(torch.relu)}
    saved = {}
    for rnn_op, kernel in kernels.items():
        for key in _KEYS:
            saved[(rnn_op, key)] = rnn_op.py_kernels.get(key)
            rnn_op.py_kernels[key] = kernel
    clear_dispatch_caches()
    try:
        yield
    finally:
        for (rnn_op, key), kernel in saved.items():
            if kernel is None:
                rnn_op.py_kernels.pop(key, None)
            else:
                rnn_op.py_kernels[key] = kernel
        clear_dispatch_caches()


def _onnx_rnn(activation: str):
    """aten.rnn_<act>.input -> one ONNX RNN node per layer (both directions in one node)."""
    def aten_rnn(input, hx, params, has_biases: bool, num_layers: int, dropout: float, train: bool,
                 bidirectional: bool, batch_first: bool):
        directions = 2 if bidirectional else 1
        per_direction = 4 if has_biases else 2
        x = op.Transpose(input, perm=[1, 0, 2]) if batch_first else input
        finals = []
        for layer in range(num_layers):
            h0 = op.Slice(hx, [layer * directions], [(layer + 1) * directions], axes=[0])
            ws, rs, bs = [], [], []
            for d in range(directions):
                k = (layer * directions + d) * per_direction
                ws.append(op.Unsqueeze(params[k], [0]))
                rs.append(op.Unsqueeze(params[k + 1], [0]))
                if has_biases:
                    bs.append(op.Unsqueeze(op.Concat(params[k + 2], params[k + 3], axis=0), [0]))
            w = op.Concat(*ws, axis=0) if directions > 1 else ws[0]
            r = op.Concat(*rs, axis=0) if directions > 1 else rs[0]
            attrs = dict(initial_h=h0, hidden_size=hx.shape[2], activations=[activation] * directions,
                         direction="bidirectional" if bidirectional else "forward")
            if has_biases:
                b = op.Concat(*bs, axis=0) if directions > 1 else bs[0]
                y, y_h = op.RNN(x, w, r, b, **attrs)
            else:
                y, y_h = op.RNN(x, w, r, **attrs)
            y = op.Transpose(y, perm=[0, 2, 1, 3])  # [T, dirs, B, H] -> [T, B, dirs, H]
            x = op.Reshape(y, op.Concat(op.Shape(y, start=0, end=2), op.Constant(value_ints=[-1]), axis=0))
            finals.append(y_h)
        out = op.Transpose(x, perm=[1, 0, 2]) if batch_first else x
        return out, (op.Concat(*finals, axis=0) if len(finals) > 1 else finals[0])
    return aten_rnn


def translations() -> dict:
    return {torch.ops.aten.rnn_tanh.input: _onnx_rnn("Tanh"), torch.ops.aten.rnn_relu.input: _onnx_rnn("Relu")}
