"""ONNX picture: nodes grouped by spec path, from node names written as export/naming.py writes them."""

import onnx
from onnx import TensorProto, helper

from builder.commands.cli import main
from viz.dot_render import parse_dot
from viz.onnx_view import onnx_dot


def named_model():
    """x -> /stem/Conv -> /stage1/stage1.0/stage1.0.act/Relu -> /stage1/stage1.0/stage1.0.sum/Add (+ stem)."""
    w = helper.make_tensor("stem.weight", TensorProto.FLOAT, [4, 3, 3, 3], [0.0] * 108)
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    nodes = [
        helper.make_node("Conv", ["x", "stem.weight"], ["s"], name="/stem/Conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["s"], ["r"], name="/stage1/stage1.0/stage1.0.act/Relu"),
        helper.make_node("Add", ["r", "s"], ["a"], name="/stage1/stage1.0/stage1.0.sum/Add"),
        helper.make_node("ReduceMean", ["a", "axes"], ["y"], name="/pool/ReduceMean", keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 8, 8])], [w, axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.metadata_props.add(key="builder.spec", value="tiny")
    onnx.checker.check_model(model)
    return model


def test_nodes_grouped_by_spec_path():
    p = parse_dot(onnx_dot(named_model()).to_dot())
    assert p.cluster_path("/stage1/stage1.0/stage1.0.sum/Add") == ["stage1", "stage1.0", "stage1.0.sum"]
    assert p.cluster_path("/stem/Conv") == ["stem"]
    assert "4 x 3 x 3 x 3" in p.nodes["/stem/Conv"]["label"] and "108 weights" in p.nodes["/stem/Conv"]["label"]
    assert "weights" not in p.nodes["/pool/ReduceMean"]["label"]  # int64 axes are not weights
    edges = {(u, v): a for u, v, a in p.edges}
    assert edges[("in:x", "/stem/Conv")]["label"] == "B x 3 x 8 x 8"
    assert edges[("/stem/Conv", "/stage1/stage1.0/stage1.0.sum/Add")]["label"] == "B x 4 x 8 x 8"
    assert ("/pool/ReduceMean", "out:y") in edges
    assert "tiny: exported ONNX graph" in onnx_dot(named_model()).graph_attrs["label"]


def test_cli_on_onnx_file(tmp_path):
    path = tmp_path / "tiny.onnx"
    onnx.save(named_model(), path)
    assert main(["viz", str(path), "-o", str(tmp_path / "o.dot")]) == 0
    assert "cluster_stage1.0" in (tmp_path / "o.dot").read_text()


def test_real_export_is_grouped_like_the_spec(tmp_path):
    import builder
    from export.onnx_export import export_onnx

    spec = builder.load("spec: 1\nname: two\ninputs:\n  x: {shape: [B, 4]}\nblocks:\n  b:\n    inputs: [x]\n"
                        "    nodes:\n      fc: {op: Linear, out_features: 4}\n      act: {op: ReLU}\n"
                        "    outputs: [act]\nnodes:\n  blk: {block: b, repeat: 2}\n"
                        "  head: {op: Linear, out_features: 2}\noutputs: [head]\n")
    export_onnx(builder.build(spec), tmp_path / "two.onnx", spec=spec)
    p = parse_dot(onnx_dot(tmp_path / "two.onnx").to_dot())
    gemm = next(n for n in p.nodes if n.endswith("blk.1.fc/Gemm"))
    assert p.cluster_path(gemm) == ["blk", "blk.1", "blk.1.fc"]


def test_depth_collapses_scopes():
    p = parse_dot(onnx_dot(named_model(), depth=1).to_dot())
    assert "scope:stage1.0" in p.nodes and p.cluster_path("scope:stage1.0") == ["stage1"]
    assert "2 ONNX nodes" in p.nodes["scope:stage1.0"]["label"]
    edges = {(u, v) for u, v, _ in p.edges}
    assert ("/stem/Conv", "scope:stage1.0") in edges and ("scope:stage1.0", "/pool/ReduceMean") in edges
    p0 = parse_dot(onnx_dot(named_model(), depth=0).to_dot())
    assert {"scope:stem", "scope:stage1", "scope:pool"} <= set(p0.nodes)
    assert onnx_dot(named_model()).to_dot() == onnx_dot(named_model(), depth=-1).to_dot()


def test_an_empty_onnx_file_is_a_one_line_error(tmp_path, capsys):
    from builder.commands.cli import main
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    assert main(["viz", str(empty), "-o", str(tmp_path / "e.svg")]) == 2
    err = capsys.readouterr().err
    assert "empty graph" in err and "Traceback" not in err
    assert not (tmp_path / "e.svg").exists()
