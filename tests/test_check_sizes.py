"""Issue 20 item 12: `build check` accepts a valid spec that leaves sizes to the data (`auto` input dims,
${data.num_features}, ${data.num_classes}) by reading them from train.data as `build train` does; without
train.data it names every value that needs the data (exit 2). A property over data sources and uses."""
from __future__ import annotations

import random

import numpy as np
import pytest

from builder.commands.cli import main


def _data(tmp_path, rng, kind):
    """(train.data mapping as YAML, features per sample, classes) of a small random data set."""
    n, f, c = rng.randint(12, 30), rng.randint(1, 7), rng.randint(2, 5)
    y = [i % c for i in range(n)]
    if kind == "npz":
        np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).normal(size=(n, f)).astype(np.float32),
                 y=np.array(y, np.int64))
        return f"{{source: npz, path: {tmp_path}/d.npz}}", f, c
    cats = rng.randint(0, 1)  # a category column adds its one-hot width
    cols = [f"n{i}" for i in range(f)] + ["cat"] * cats
    lines = [",".join(cols + ["label"])]
    for i in range(n):
        lines.append(",".join([f"{rng.uniform(-1, 1):.3f}" for _ in range(f)] + [rng.choice("pq")] * cats
                              + [f"class{y[i]}"]))
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    # every row has 'p' or 'q': count what appears (a column of all 'p' is one category)
    width = f + (len({line.split(",")[f] for line in lines[1:]}) if cats else 0)
    return f"{{source: csv, path: {tmp_path}/d.csv, target: label}}", width, c


@pytest.mark.parametrize("seed", range(10))
def test_check_reads_sizes_from_train_data_as_train_does(tmp_path, capsys, seed):
    rng = random.Random(seed)
    data, f, c = _data(tmp_path, rng, rng.choice(["npz", "csv"]))
    use_auto, hidden = rng.random() < 0.5, rng.randint(2, 9)
    width = "auto" if use_auto else "${data.num_features}"
    classes = "'${data.num_classes}'" if rng.random() < 0.7 else "4"
    spec = tmp_path / "s.yaml"
    body = (f"spec: 1\nname: s\ninputs: {{x: {{shape: [B, {width if use_auto else f}]}}}}\nnodes:\n"
            f"  h: {{op: Linear, out_features: {hidden if use_auto else '${data.num_features}'}}}\n"
            f"  out: {{op: Linear, out_features: {classes}}}\n")
    spec.write_text(body + f"train:\n  data: {data}\n  loss: cross_entropy\n")
    out_classes = c if "$" in classes else 4
    h = hidden if use_auto else f
    params = f * h + h + h * out_classes + out_classes
    assert main(["check", str(spec)]) == 0, capsys.readouterr().err
    assert capsys.readouterr().out == f"OK s: 2 nodes, {params:,} parameters ({params:,} trainable)\n"
    # the same spec without train.data: exit 2, one line per value that needs the data, and how to give it
    spec.write_text(body)
    assert main(["check", str(spec)]) == 2
    err = capsys.readouterr().err.splitlines()
    needs = ["data.num_features"] + (["data.num_classes"] if "$" in classes else [])  # `auto` or the hidden width
    assert len(err) == len(needs) and all(f"--set {k}=N" in line for k, line in zip(needs, err)), err
    sets = [a for k, v in (("data.num_features", f), ("data.num_classes", c)) if k in needs
            for a in ("--set", f"{k}={v}")]
    assert main(["check", str(spec), *sets]) == 0
    assert capsys.readouterr().out == f"OK s: 2 nodes, {params:,} parameters ({params:,} trainable)\n"
