"""`repeat:` of a block with several inputs and outputs (issue 20 item 1).

The rule: copy k's outputs feed copy k+1's first inputs by position; inputs beyond the outputs are given to
every copy as bound by `in:`; a repeated block with more outputs than inputs is an error naming the block.
Property: for random blocks with 1-3 inputs and outputs, `repeat: N` equals the chain unrolled by hand
(node by node, without blocks): the same parameters and, with the same weights, the same outputs, for the
last copy (`stack.port`) and for every copy by index (`stack.k.port`).
"""
from __future__ import annotations

import random

import pytest
import torch

import builder

D = 6


def random_block(rng: random.Random):
    """(n_in, nodes [(name, op, sources)], output node names): sources are ('in', i) or ('node', name)."""
    n_in = rng.randint(1, 3)
    n_out = rng.randint(1, n_in)
    nodes = []
    pool = [("in", i) for i in range(n_in)]
    for j in range(rng.randint(n_out, 5)):
        op = rng.choice(["Linear", "add", "mul", "Tanh"])
        k = 2 if op in ("add", "mul") else 1
        srcs = [rng.choice(pool) for _ in range(k)]
        nodes.append((f"n{j}", op, srcs))
        pool.append(("node", f"n{j}"))
    outs = rng.sample([n for n, _, _ in nodes], n_out)
    return n_in, nodes, outs


def node_yaml(name, op, refs):
    extra = ", out_features: %d" % D if op == "Linear" else ""
    return f"  {name}: {{op: {op}, in: [{', '.join(refs)}]{extra}}}"


def repeated_spec(n_in, nodes, outs, n, rng):
    inputs = ", ".join(f"x{i}: {{shape: [B, {D}]}}" for i in range(n_in))
    body = "\n".join("    " + node_yaml(name, op, [f"i{s[1]}" if s[0] == "in" else s[1] for s in srcs])
                     for name, op, srcs in nodes)
    block_outs = "" if len(outs) == 1 and outs[0] == nodes[-1][0] and rng.random() < 0.5 else \
        f"    outputs: [{', '.join(outs)}]\n"
    wire = (f"[{', '.join(f'x{i}' for i in range(n_in))}]" if rng.random() < 0.5 else
            "{" + ", ".join(f"i{i}: x{i}" for i in range(n_in)) + "}")
    net_outs = [f"last{j}: stack.{o}" for j, o in enumerate(outs)]
    net_outs += [f"c{k}_{j}: stack.{k}.{o}" for k in range(n) for j, o in enumerate(outs)]
    return f"""spec: 1
inputs: {{{inputs}}}
blocks:
  b:
    inputs: [{', '.join(f'i{i}' for i in range(n_in))}]
    nodes:
{body}
{block_outs}nodes:
  stack: {{block: b, repeat: {n}, in: {wire}}}
outputs: {{{', '.join(net_outs)}}}
"""


def unrolled_spec(n_in, nodes, outs, n):
    """The same chain written node by node: copy k's node `n1` is `c{k}_n1`."""
    inputs = ", ".join(f"x{i}: {{shape: [B, {D}]}}" for i in range(n_in))

    def ref(k, src):
        if src[0] == "node":
            return f"c{k}_{src[1]}"
        i = src[1]
        return f"c{k - 1}_{outs[i]}" if k > 0 and i < len(outs) else f"x{i}"

    lines = [node_yaml(f"c{k}_{name}", op, [ref(k, s) for s in srcs]) for k in range(n) for name, op, srcs in nodes]
    net_outs = [f"last{j}: c{n - 1}_{o}" for j, o in enumerate(outs)]
    net_outs += [f"c{k}_{j}: c{k}_{o}" for k in range(n) for j, o in enumerate(outs)]
    return f"spec: 1\ninputs: {{{inputs}}}\nnodes:\n" + "\n".join(lines) + f"\noutputs: {{{', '.join(net_outs)}}}\n"


@pytest.mark.parametrize("seed", range(30))
def test_repeat_equals_the_hand_unrolled_chain(seed):
    rng = random.Random(seed)
    n_in, nodes, outs = random_block(rng)
    n = rng.randint(1, 4)
    rep_text = repeated_spec(n_in, nodes, outs, n, rng)
    rep, unr = builder.load(rep_text), builder.load(unrolled_spec(n_in, nodes, outs, n))
    assert rep.network().total_params == unr.network().total_params
    torch.manual_seed(seed)
    m_rep, m_unr = builder.build(rep), builder.build(unr)
    sd = m_rep.state_dict()
    renamed = {}
    for key, v in sd.items():  # stack.{k}.{node}.{param} -> c{k}_{node}.{param}
        _, k, node, p = key.split(".")
        renamed[f"c{k}_{node}.{p}"] = v
    assert set(renamed) == set(m_unr.state_dict()), rep_text
    m_unr.load_state_dict(renamed)
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(3, D, generator=g) * 0.5 for _ in range(n_in)]
    with torch.no_grad():
        a, b = m_rep(*xs), m_unr(*xs)
    a, b = (a,) if torch.is_tensor(a) else a, (b,) if torch.is_tensor(b) else b
    assert len(a) == len(b) == len(outs) * (n + 1)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=0, atol=0, msg=rep_text)


WAVENET = """spec: 1
inputs: {x: {shape: [B, 4]}, skip: {shape: [B, 4]}}
blocks:
  wave:
    inputs: [x, skip]
    nodes:
      fc: {op: Linear, out_features: 4}
      res: {op: add, in: [fc, x]}
      sk: {op: add, in: [fc, skip]}
    outputs: [res, sk]
nodes:
  stack: {block: wave, repeat: 3, in: {x: x, skip: skip}}
outputs: {res: stack.res, total_skip: stack.sk, first_skip: stack.0.sk, second: stack.1}
"""


def test_wavenet_skip_sum_accumulates_through_every_copy():
    m = builder.build(builder.load(WAVENET))
    x, skip = torch.randn(2, 4), torch.randn(2, 4)
    res, total, first, second = m(x, skip)
    fcs, h = [], x
    for k in range(3):
        fc = getattr(m.stack, str(k)).fc
        fcs.append(fc(h))
        h = fcs[-1] + h
    torch.testing.assert_close(res, h)
    torch.testing.assert_close(total, skip + fcs[0] + fcs[1] + fcs[2])
    torch.testing.assert_close(first, skip + fcs[0])
    torch.testing.assert_close(second, x + fcs[0] + fcs[1])  # `stack.1`: copy 1's first output


def test_repeat_with_more_outputs_than_inputs_names_the_block(tmp_path):
    text = WAVENET.replace("inputs: [x, skip]", "inputs: [x]").replace(
        "sk: {op: add, in: [fc, skip]}", "sk: {op: Tanh, in: fc}").replace("in: {x: x, skip: skip}", "in: x")
    path = tmp_path / "net.yaml"
    path.write_text(text)
    with pytest.raises(builder.SpecError) as e:
        builder.load(path)
    msg = str(e.value)
    assert "block 'wave' is repeated but has 2 outputs and 1 input(s)" in msg
    assert f"{path}:12:" in msg and "stack:" in msg  # the `repeat:` of the instance, file:line
    assert f"defined at {path}:4" in msg


@pytest.mark.parametrize("ref, message", [("stack.3.sk", "has 3 copies (0 to 2), not a copy 3"),
                                          ("stack.0.nope", "block 'stack.0' has no output 'nope'")])
def test_a_wrong_copy_reference_says_what_exists(ref, message):
    with pytest.raises(builder.SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        builder.load(WAVENET.replace("first_skip: stack.0.sk", f"first_skip: {ref}"))
