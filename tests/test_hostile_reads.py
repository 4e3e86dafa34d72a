"""Hardening, round 2 (issue 21): every file the tool reads is untrusted, every folder it writes is the user's.

One test (or a few) per item of the issue; each hostile input must be refused with one line (a UserError,
exit 2 from the CLI, no traceback) within the time and memory of a normal read, and nothing may be
written where the user did not point the tool.
"""
from __future__ import annotations

import csv
import io
import json
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from builder.commands.cli import main
from builder.core.errors import SpecError, UserError

ROOT = Path(__file__).resolve().parents[1]
XOR = ROOT / "specs" / "xor_mlp.yaml"
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))


def one_line(capsys, code) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


def spec_text(name="xor_mlp", extra=""):
    return XOR.read_text().replace("name: xor_mlp", f"name: {name}") + extra


# -- 1. lock and appended files that are symbolic links ----------------------------------------------------
def test_a_lock_file_that_is_a_symlink_is_refused_and_its_target_untouched(tmp_path):
    from builder.training.runlog import RunFolder
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    run = tmp_path / "run"
    run.mkdir()
    (run / "resolved.yaml").write_text("name: x\ntrain: {}\n")
    (run / ".lock").symlink_to(victim)
    with pytest.raises(UserError, match=r"\.lock is a symbolic link"):
        RunFolder(run, resume=True)
    assert victim.read_text() == "precious"


def test_metrics_csv_and_sweep_log_are_opened_without_following_links():
    """The two files opened for appending pass O_NOFOLLOW (all other outputs are renamed into place)."""
    for path in ("builder/training/runlog.py", "builder/sweep/driver.py"):
        source = (ROOT / path).read_text()
        assert "O_NOFOLLOW" in source or "NOFOLLOW" in source, path
        assert 'open(path, "a"' not in source and 'open(folder / "sweep.log", "ab")' not in source


def test_metrics_csv_replaced_by_a_link_never_writes_through_it(tmp_path):
    from builder.training.runlog import RunFolder
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    run = RunFolder(tmp_path / "run")
    try:
        run.write_metrics([{"epoch": 1, "loss": 0.5, "seconds": 0.1}])
        run.close()
        (tmp_path / "run" / "metrics.csv").unlink()
        (tmp_path / "run" / "metrics.csv").symlink_to(victim)
        run.write_metrics([{"epoch": 1, "loss": 0.5, "seconds": 0.1}, {"epoch": 2, "loss": 0.4, "seconds": 0.1}])
        run.write_metrics([{"epoch": 1, "loss": 0.5, "seconds": 0.1}, {"epoch": 2, "loss": 0.4, "seconds": 0.1},
                           {"epoch": 3, "loss": 0.3, "seconds": 0.1}])
    finally:
        run.release()
    assert victim.read_text() == "precious"
    assert not (tmp_path / "run" / "metrics.csv").is_symlink()
    assert (tmp_path / "run" / "metrics.csv").read_text().count("\n") == 4


# -- 2. name: is one safe path component ----------------------------------------------------------------
@pytest.mark.parametrize("name", ["/tmp/x", "../../x", "a/b", "..", ".hidden", "-rf", "x" * 101, "'a b'"])
def test_a_spec_name_that_is_not_one_file_name_is_refused_at_its_line(tmp_path, name):
    from builder import load
    path = tmp_path / "s.yaml"
    path.write_text(spec_text(name))
    with pytest.raises(SpecError) as e:
        load(path)
    assert len(str(e.value).splitlines()) == 1 and ":2:1: error: name " in str(e.value)


def test_the_schema_has_the_same_name_rule():
    from builder.spec.reader import NAME_RULE
    from builder.spec.schema import spec_schema
    assert spec_schema()["properties"]["name"]["pattern"] == NAME_RULE.pattern


def test_ordinary_names_still_load(tmp_path):
    from builder import load
    for name in ("tiny-gpt", "gan_tril", "v1.2", "model+aug"):
        path = tmp_path / "s.yaml"
        path.write_text(spec_text(name))
        assert load(path).name == name


# -- 3. a run or sweep folder that is not ours ----------------------------------------------------------
def test_a_non_empty_folder_that_holds_no_run_is_refused_without_overwrite(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "spec.yaml").write_text("my own notes")
    (mine / "test.json").write_text("{}")
    msg = one_line(capsys, main(["train", str(XOR), "--run-dir", str(mine), "--quiet"]))
    assert "is not empty and holds no run of ours (spec.yaml, test.json)" in msg
    assert (mine / "spec.yaml").read_text() == "my own notes"
    assert sorted(p.name for p in mine.iterdir()) == ["spec.yaml", "test.json"]


def test_overwrite_writes_into_such_a_folder_and_an_empty_one_needs_nothing(tmp_path):
    from builder.training.runlog import RunFolder, foreign_files
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("x")
    RunFolder(mine, overwrite=True).release()
    assert (mine / "notes.txt").read_text() == "x"  # --overwrite deletes only a run's own files
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ".lock").write_text("")  # a lock and a killed write's temporary alone count as empty
    (empty / ".best.pt.abc123.tmp").mkdir()
    assert foreign_files(empty, "resolved.yaml") == []
    RunFolder(empty).release()


SWEEP = spec_text("sw", """sweep:
  metric: val.accuracy
  trials: 1
  space:
    hidden: {int: [2, 4]}
""")


def test_a_sweep_dir_that_holds_no_sweep_is_refused(tmp_path, capsys):
    spec = tmp_path / "sw.yaml"
    spec.write_text(SWEEP)
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "best.yaml").write_text("mine")
    msg = one_line(capsys, main(["sweep", str(spec), "--sweep-dir", str(folder), "--quiet"]))
    assert "--sweep-dir" in msg and "holds no run of ours (best.yaml)" in msg
    assert sorted(p.name for p in folder.iterdir()) == ["best.yaml"]


# -- 4. CSV formula cells ---------------------------------------------------------------------------------
def test_text_cells_that_start_a_formula_are_neutralised():
    from builder.core.csv_cells import cell
    assert cell("=cmd|' /C calc'!A0") == "'=cmd|' /C calc'!A0"
    assert [cell(v) for v in ("+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx", "cat")] == \
        ["'+1+1", "'-2+3", "'@SUM(A1)", "'\tx", "'\rx", "cat"]
    assert [cell(v) for v in ("-0.5", "-inf", 3, -1.5)] == ["-0.5", "-inf", 3, -1.5]  # numbers stay numbers


def test_confusion_matrix_and_predictions_csv_neutralise_class_names(tmp_path):
    from builder.training.evaluation import write_report
    from export.predict import _table
    labels = ["=cmd|calc", "@x", "ok"]
    write_report(tmp_path, {"accuracy": 1.0}, np.eye(3, dtype=int), labels)
    rows = list(csv.reader(io.StringIO((tmp_path / "confusion_matrix.csv").read_text())))
    assert rows[0][1:] == ["'=cmd|calc", "'@x", "ok"] and rows[1][0] == "'=cmd|calc"
    table = list(csv.reader(io.StringIO(_table(np.array([[3.0, 1.0, 0.0]]), labels))))
    assert table[1][0] == "'=cmd|calc" and table[0][1] == "prob_=cmd|calc"  # header: prefixed by prob_


def test_trials_csv_neutralises_text_params():
    source = (ROOT / "builder" / "sweep" / "results.py").read_text()
    assert "csv_cells.writer" in source and "csv.writer" not in source


# -- 5. every YAML/JSON file goes through the bounded reader --------------------------------------------------
def test_resolved_yaml_alias_bomb_and_deep_nesting_are_refused(tmp_path):
    from builder.training.runlog import read_resolved
    for text, why in ((BOMB, "alias bomb"), ("[" * 100_000, "nest"),
                      ("a: " + "9" * 5000, "too long")):
        (tmp_path / "resolved.yaml").write_text(text)
        tracemalloc.start()
        with pytest.raises(UserError, match=why) as e:
            read_resolved(tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert "resolved.yaml" in str(e.value) and len(str(e.value).splitlines()) == 1
        assert peak < 50_000_000, peak


def test_resume_of_a_bombed_run_folder_is_one_line(tmp_path, capsys):
    (tmp_path / "resolved.yaml").write_text(BOMB)
    msg = one_line(capsys, main(["train", "--resume", str(tmp_path)]))
    assert "alias bomb" in msg


def test_weight_map_alias_bomb_and_bad_values(tmp_path):
    from builder.weights.loader import parse_map
    path = tmp_path / "map.yaml"
    path.write_text(BOMB)
    with pytest.raises(UserError, match="alias bomb"):
        parse_map(path)
    for rule, why in (({"from": "a", "split": {"dim": "abc", "to": ["x", "y"]}}, "split.dim"),
                      ({"from": "a", "split": {"sizes": "ab", "to": ["x", "y"]}}, "split.sizes"),
                      ({"from": "a", "to": "b", "transpose": ["a", 1]}, "transpose")):
        with pytest.raises(UserError, match=why):
            parse_map({"rules": [rule]})
    with pytest.raises(UserError, match="rules must be a list"):
        parse_map({"rules": 5})


def test_weight_map_placeholders_match_without_backtracking():
    """Six `{x*}` against a 100-character key took 24 s as a regex (n^6); the matcher is linear in the
    pieces for this one and refuses the truly ambiguous ones after a bounded number of steps."""
    from builder.weights.patterns import MAX_STEPS, Pattern
    assert Pattern("{a*}{b*}{c*}{d*}{e*}{f*}x").match("a" * 100) is None
    assert Pattern("{a*}{b*}{c*}{d*}{e*}{f*}x").match("a" * 5000) is None
    with pytest.raises(UserError, match=f"too ambiguous to match key .*over {MAX_STEPS} steps"):
        Pattern("{a*}a{b*}a{c*}a{d*}a{e*}a{f*}x").match("a" * 1000)
    assert Pattern("transformer.h.{n}.attn.{p*}").match("transformer.h.11.attn.c_attn.weight") == \
        {"n": "11", "p": "c_attn.weight"}


def test_weight_map_patterns_agree_with_the_lazy_regex_they_replace():
    import random
    import re
    rnd = random.Random(7)

    def regex(pattern):
        out, pos = [], 0
        for m in re.finditer(r"\{(\w+)(\*?)\}", pattern):
            out += [re.escape(pattern[pos:m.start()]),
                    f"(?P<{m.group(1)}>.*?)" if m.group(2) else f"(?P<{m.group(1)}>[^.]+?)"]
            pos = m.end()
        return re.compile("".join(out) + re.escape(pattern[pos:]) + r"\Z")

    from builder.weights.patterns import Pattern
    for _ in range(3000):
        pattern = "".join(rnd.choice(["a", ".", "ab", f"{{x{j}}}", f"{{y{j}*}}", "b."]) for j in range(rnd.randint(0, 4)))
        key = "".join(rnd.choice("ab.") for _ in range(rnd.randint(0, 8)))
        m = regex(pattern).match(key)
        assert Pattern(pattern).match(key) == (m.groupdict() if m else None), (pattern, key)


def test_vocab_and_tokenizer_json_deep_nesting_and_garbage(tmp_path):
    from builder.data import tokenizer
    for name, text in (("vocab.json", "[" * 100_000), ("tokenizer.json", '{"a":' * 50_000),
                       ("vocab.json", '["a", "a"]'), ("vocab.json", "[1, 2]"), ("tokenizer.json", '{"model": 3}'),
                       ("vocab.json", "NaN"), ("vocab.json", b"\xff\xfe")):
        folder = tmp_path / str(abs(hash((name, str(text)))))
        folder.mkdir()
        path = folder / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        with pytest.raises(UserError) as e:
            tokenizer.in_folder(folder)
        assert str(path) in str(e.value) and len(str(e.value).splitlines()) == 1


CRAFTED_METADATA = [
    {"builder.inputs": "[" * 10_000}, {"builder.inputs": "5"}, {"builder.inputs": '[{"shape": []}]'},
    {"builder.inputs": '[{"name": "x", "value_range": [1]}]'}, {"builder.outputs": '{"a": 1}'},
    {"builder.class_labels": "[1, 2]"}, {"builder.vocab": '"abc"'}, {"builder.dim_ranges": '{"T": "x"}'},
    {"builder.data": '{"layout": 5}'}, {"builder.data": '{"layout": {"kinds": {"a": "weird"}}}'},
    {"builder.fixed_dims": "[]"}, {"builder.generation": "not json"}, {"builder.tokenizer": '{"a": ' * 100 + "1"},
]


@pytest.mark.parametrize("props", CRAFTED_METADATA)
def test_crafted_onnx_metadata_is_one_line(props):
    from builder.data.tokenizer import from_metadata
    from export.metadata import read_metadata
    with pytest.raises(UserError) as e:
        meta = read_metadata(props, "evil.onnx")
        from_metadata(meta)
    assert len(str(e.value).splitlines()) == 1


def test_a_real_onnx_file_with_crafted_metadata_is_refused_by_predict(tmp_path, capsys):
    import onnx
    from onnx import TensorProto, helper
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"builder.inputs": "[" * 100_000})
    onnx.save(model, tmp_path / "evil.onnx")
    np.save(tmp_path / "x.npy", np.zeros((1, 2), np.float32))
    msg = one_line(capsys, main(["predict", str(tmp_path / "evil.onnx"), "--input", str(tmp_path / "x.npy")]))
    assert "evil.onnx: metadata builder.inputs: JSON nested deeper than 64 levels" in msg


def test_every_yaml_and_json_read_goes_through_the_bounded_reader():
    """No module reads YAML or JSON files on its own: yaml.safe_load / json.loads of a file's text appear
    only in the reader itself (the sweep's worker protocol reads its own pipe)."""
    import re
    allowed = {"builder/text/readers.py", "builder/text/yaml_loader.py", "builder/sweep/worker.py",
               "builder/sweep/driver.py"}
    offenders = []
    for folder in ("builder", "export", "viz"):
        for path in (ROOT / folder).rglob("*.py"):
            rel = str(path.relative_to(ROOT))
            if rel in allowed:
                continue
            if re.search(r"yaml\.(safe_)?load\(|json\.loads?\(", path.read_text()):
                offenders.append(rel)
    assert offenders == []


# -- 6. use: fan-out -------------------------------------------------------------------------------------
def test_use_fan_out_reads_each_file_once(tmp_path):
    """Ten files, each using the next four times: 4^9 reads before; each file is read once now."""
    from builder import load
    for i in range(9):
        (tmp_path / f"f{i}.yaml").write_text(f"use: [f{i + 1}.yaml, f{i + 1}.yaml, f{i + 1}.yaml, f{i + 1}.yaml]\n")
    (tmp_path / "f9.yaml").write_text("blocks:\n  mlp:\n    nodes:\n      fc: {op: Linear, out_features: 2}\n")
    top = tmp_path / "top.yaml"
    top.write_text(spec_text("fan").replace("params:", "use: [f0.yaml, f0.yaml]\nparams:"))
    assert load(top).name == "fan"


def test_use_of_too_many_files_is_capped(tmp_path):
    from builder import load
    from builder.spec.reader import MAX_USE_FILES
    n = MAX_USE_FILES + 5
    (tmp_path / "hub.yaml").write_text("use: [" + ", ".join(f"u{i}.yaml" for i in range(n)) + "]\n")
    for i in range(n):
        (tmp_path / f"u{i}.yaml").write_text("blocks: {}\n")
    top = tmp_path / "top.yaml"
    top.write_text(spec_text("cap").replace("params:", "use: [hub.yaml]\nparams:"))
    with pytest.raises(SpecError, match=f"more than {MAX_USE_FILES} files in all"):
        load(top)


# -- 7. the data-size regex ---------------------------------------------------------------------------------
def test_needs_data_is_linear_on_a_comment_of_dollar_braces():
    from builder.data.sizes import USES_DATA, needs_data
    assert not needs_data("# " + "${" * 50_000) and not needs_data("# " + "[" * 100_000)
    assert needs_data("x: {shape: [B, auto]}") and needs_data("out_features: ${data.num_classes}")
    # every match attempt stops at the next brace or bracket: at most a few characters per start
    assert "[^{}]*" in USES_DATA.pattern and "[^\\[\\]]*" in USES_DATA.pattern


# -- 8. expressions, numbers, --set ---------------------------------------------------------------------
@pytest.mark.parametrize("expr, why", [
    ("'%2147483000d' % 1", "cannot format strings"), ("0 ** -1", "division by zero"),
    ("0.5 ** -100000", "too large"), ("'%c' % -1", "cannot format strings"), ("(-8) ** 0.5", "not a real"),
    ("10.0 ** 400", "too large"), ("2 ** 64", "too large")])
def test_expression_attacks_are_refused_before_computing(expr, why):
    from builder.text.expr import ExprError, evaluate
    tracemalloc.start()
    with pytest.raises(ExprError, match=why):
        evaluate(expr, {})
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1_000_000


def test_a_5000_digit_integer_is_refused_in_a_spec_and_in_set(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(spec_text().replace("{hidden: 8}", "{hidden: " + "9" * 5000 + "}"))
    assert "integer of 5000 digits" in one_line(capsys, main(["check", str(path)]))
    assert "integer of 5000 digits" in one_line(capsys, main(["check", str(XOR), "--set", "hidden=" + "9" * 5000]))


def test_deep_set_keys_and_leading_zeros_are_refused(capsys):
    msg = one_line(capsys, main(["check", str(XOR), "--set", "train" + ".a" * 3000 + "=1"]))
    assert "nested deeper than 16 levels" in msg
    msg = one_line(capsys, main(["check", str(XOR), "--set", "hidden=010"]))
    assert "leading zero" in msg and "write 10" in msg
    assert main(["check", str(XOR), "--set", "hidden=10"]) == 0


def test_leading_zero_in_a_spec_file_is_refused(tmp_path):
    from builder import load
    path = tmp_path / "s.yaml"
    path.write_text(spec_text().replace("{hidden: 8}", "{hidden: 010}"))
    with pytest.raises(SpecError, match=r":6:18: error: integer '010' has a leading zero"):
        load(path)


# -- 9. sizes of a whole model ------------------------------------------------------------------------------
BIG = """spec: 1
name: big
inputs:
  x: {shape: [B, 10000]}
blocks:
  layer:
    inputs: [x]
    nodes:
      fc: {op: Linear, out_features: 10000}
nodes:
  body: {block: layer, repeat: 100}
"""


def test_a_spec_over_the_total_parameter_limit_is_refused_by_check(tmp_path, capsys):
    path = tmp_path / "big.yaml"
    path.write_text(BIG)
    msg = one_line(capsys, main(["check", str(path)]))
    assert "10,001,000,000 parameters in all, over the limit of 2,000,000,000" in msg and "--max-params" in msg
    msg = one_line(capsys, main(["check", str(XOR), "--max-params", "41"]))
    assert "42 parameters in all" in msg
    assert main(["check", str(XOR), "--max-params", "42"]) == 0


@pytest.mark.parametrize("command", [["export", "-o", "m.onnx", "--random"], ["bench"], ["viz", "--view", "backward"]])
def test_export_bench_viz_refuse_the_big_spec_before_allocating(tmp_path, capsys, command, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "big.yaml"
    path.write_text(BIG)
    tracemalloc.start()
    code = main([command[0], str(path), *command[1:]])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert "over the limit" in one_line(capsys, code)
    assert peak < 500_000_000


def test_building_more_than_the_machine_has_is_refused_before_allocating():
    from builder.core.limits import available_memory, check_memory
    free = available_memory()
    assert free is not None and free > 0
    with pytest.raises(UserError, match="GB of memory"):
        check_memory(free * 4, "building network 'model' of big")


def test_the_memory_check_runs_before_compile_allocates(tmp_path):
    """Layers of 20000 x 20000 (each under the per-node limit), as many as twice the free memory."""
    from builder import load
    from builder.compile import BYTES_PER_PARAM, compile_network
    from builder.core.limits import allow_params, available_memory
    layers = int(available_memory() * 2 / BYTES_PER_PARAM / 4e8) + 1
    path = tmp_path / "deep.yaml"
    path.write_text(BIG.replace("10000", "20000").replace("repeat: 100", f"repeat: {layers}"))
    with allow_params(10**15):
        spec = load(path)
        with pytest.raises(UserError, match="GB of memory"):
            compile_network(spec)


def test_every_command_takes_max_params():
    from builder.commands.cli import make_parser
    parser = make_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert len(commands) >= 10
    for name, sub in commands.items():
        assert any("--max-params" in a.option_strings for a in sub._actions), name


# -- 10. CSV category vocabularies ------------------------------------------------------------------------------
def test_a_free_text_column_is_refused_with_a_hint(tmp_path):
    from builder.data.files import read_csv
    path = tmp_path / "t.csv"
    rows = ["text,y"] + [f"sentence number {i},{i % 2}" for i in range(40_000)]
    path.write_text("\n".join(rows) + "\n")
    tracemalloc.start()
    with pytest.raises(UserError, match=r"40,000 distinct values in 40,000 rows.*text: \[text\]"):
        read_csv(path, target="y")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 200_000_000  # np.eye(40000) alone is 6.4 GB


def test_one_hot_by_indexing_equals_the_identity_rows(tmp_path):
    from builder.data.files import _one_hot, read_csv
    codes = np.array([2, 0, 1, 2])
    assert np.array_equal(_one_hot(codes, 3), np.eye(3, dtype=np.float32)[codes])
    path = tmp_path / "c.csv"
    path.write_text("colour,y\nred,1\nblue,0\ngreen,1\nred,0\n")
    (x, y), _, info = read_csv(path, target="y")
    assert info["columns"]["colour"] == ["blue", "green", "red"]
    assert x.tolist() == [[0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]]


# -- 11. the size cap on every path -----------------------------------------------------------------------------
def test_a_300_mb_spec_is_refused_on_the_train_path_after_reading_2_mb(tmp_path):
    from builder.data.sizes import load_sized
    path = tmp_path / "huge.yaml"
    with open(path, "wb") as f:  # a sparse file: 300 MB long, no disk used
        f.write(XOR.read_bytes())
        f.truncate(300_000_000)
    tracemalloc.start()
    with pytest.raises(SpecError, match="larger than 2000 kB"):  # as the spec reader says it, at file:1:1
        load_sized(path, {})
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 10_000_000, peak


def test_a_300_mb_spec_is_refused_by_train_and_sweep(tmp_path, capsys):
    path = tmp_path / "huge.yaml"
    with open(path, "wb") as f:
        f.write(XOR.read_bytes())
        f.truncate(300_000_000)
    for command in (["train", str(path), "--run-dir", str(tmp_path / "r")], ["sweep", str(path)]):
        assert "huge.yaml:1:1: error: file is larger than 2000 kB" in one_line(capsys, main(command))
    assert not (tmp_path / "r").exists()


# -- 12. CSV encodings and huge fields ----------------------------------------------------------------------------
def test_latin1_csv_and_a_200_kb_field_are_one_line(tmp_path):
    from builder.data.files import read_csv
    from export.inputs import ModelInput, read_arrays
    latin = tmp_path / "latin.csv"
    latin.write_bytes("name,y\ncaf\xe9,1\nna\xefve,0\n".encode("latin-1"))
    huge = tmp_path / "huge.csv"
    huge.write_text("a,y\n" + "x" * 200_000 + ",1\n")
    inp = ModelInput("x", (None, 1), "float32")
    for path, why in ((latin, "not UTF-8"), (huge, "field larger than field limit")):
        with pytest.raises(UserError, match=why):
            read_csv(path, target="y")
        with pytest.raises(UserError, match=why):
            read_arrays(path, [inp])


def test_the_expression_placeholder_character_in_a_file_is_one_line():
    """`${...}` is swapped for U+2983 + index while YAML parses; a literal U+2983 beside an expression
    indexed past the expressions (an IndexError traceback) before it was refused."""
    from builder.text.yaml_loader import load_yaml
    with pytest.raises(SpecError, match=r"f:2:5: error: the character U\+2983 is reserved"):
        load_yaml("a: ${x}\nb: x\u2983a", "f")
