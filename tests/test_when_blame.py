"""Issue 20 item 8: a `when: false` node is not built, but a bad `in:` on it is still an error, blamed on
that node (its spec path, file and line), never on the node after it that reads it, and reported once.
A property over random chains: where the skipped node sits, whether it is in a repeated block, whether a
later node reads it, how its `in:` is wrong, and whether another error comes first."""
from __future__ import annotations

import random

import pytest

import builder

CASES = range(40)


def _case(seed):
    rng = random.Random(seed)
    n = rng.randint(2, 6)
    k = rng.randrange(n)  # the skipped node
    in_block = rng.random() < 0.5
    other_error = rng.random() < 0.3  # then only names never written are reported (not follow-on errors)
    bad = rng.choice(["nosuch", "[n0, nosuch]", "[nosuch, n0]"] + ([] if other_error or k == 0 else ["n0.nope"]))
    read_by_next = k + 1 < n and rng.random() < 0.7
    repeat = rng.randint(1, 3)
    lines, ind = ["spec: 1", "inputs: {x: {shape: [B, 4]}}"], ""
    if in_block:
        lines += ["blocks:", "  body:", "    nodes:"]
        ind = "      "
    else:
        lines += ["nodes:"]
        ind = "  "
    where = None
    for i in range(n):
        if i == k:
            lines.append(f"{ind}n{i}: {{op: ReLU, when: false, in: {bad}}}")
            where = len(lines)
        elif i == k + 1 and not read_by_next:
            lines.append(f"{ind}n{i}: {{op: Linear, out_features: 4, in: {'n0' if k else 'x'}}}")
        elif other_error and i == n - 1 and i != k:
            lines.append(f"{ind}n{i}: {{op: NoSuchOp}}")
        else:
            lines.append(f"{ind}n{i}: {{op: Linear, out_features: 4}}")
    if in_block:
        lines += ["nodes:", f"  stack: {{block: body, repeat: {repeat}}}"]
    paths = {f"stack.{j}.n{k}" for j in range(repeat)} if in_block else {f"n{k}"}
    return "\n".join(lines) + "\n", where, paths


@pytest.mark.parametrize("seed", CASES)
def test_a_skipped_node_with_a_bad_input_is_blamed_on_itself(seed):
    text, line, paths = _case(seed)
    with pytest.raises(builder.SpecError) as info:
        builder.load(text)
    diags = [d for d in info.value.diagnostics if "nosuch" in d.message or "nope" in d.message]
    # each copy of a repeated block reports its own copy of the skipped node, once, at the `in:` line
    assert sorted(d.node for d in diags) == sorted(paths), info.value
    assert {d.line for d in diags} == {line}, info.value


@pytest.mark.parametrize("bad_in", ["b", "[b, a]", "[c]"])
def test_a_skipped_node_that_reads_itself_is_one_error_not_a_recursion(bad_in):
    text = f"""spec: 1
inputs: {{x: {{shape: [B, 4]}}}}
nodes:
  a: {{op: Linear, out_features: 4}}
  b: {{op: ReLU, when: false, in: {bad_in}}}
  c: {{op: ReLU, when: false, in: b}}
  d: {{op: Linear, out_features: 2, in: a}}
"""
    with pytest.raises(builder.SpecError) as info:
        builder.load(text)
    diags = info.value.diagnostics
    assert len(diags) == 1 and diags[0].line == 5 and diags[0].node == "b", info.value
    assert "cycle" in diags[0].message
