"""Property tests (issue 7): a damaged spec is either a clean SpecError/UserError or a valid graph.

The seeds are the small valid specs of specs/, specs/examples/ and tests/fuzz_seeds/; the damage comes
from tests/spec_mutations.py (the same engine `benchmarks/fuzz.py` runs for longer). 2,000 examples in
all, derandomized so CI sees the same cases every run; the long benchmark explores new ones.
"""
from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import spec_mutations as M

SEEDS = M.seed_specs()


def fuzz(n: int):
    return settings(max_examples=n, deadline=None, derandomize=True, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _seed(ch):
    return ch.choice(SEEDS)


def _report(text, applied):
    return f"mutations: {applied}\n--- spec ---\n{text}"


def test_there_are_seeds():
    names = {p.name for p, _, _ in SEEDS}
    assert "tiny_resnet.yaml" in names and "tiny_gpt.yaml" in names
    assert len(SEEDS) >= 5


@fuzz(1000)
@given(st.data())
def test_tree_mutations(data):
    """Drop keys, swap types, random strings and numbers, broken and crossed references."""
    ch = M.HypothesisChooser(data)
    path, _, doc = _seed(ch)
    mutated, applied = M.mutate_tree(copy.deepcopy(doc), ch, ch.integer(1, 3), [d for _, _, d in SEEDS])
    text = M.dump(mutated)
    try:
        outcome = M.check_outcome(text, path.parent)
        event(f"{outcome}: {applied[0].split()[0]}")
        if outcome == "ok":
            M.check_runs(text, path.parent, max_params=200_000)  # accepted means it builds and runs
    except M.FuzzFailure as e:
        pytest.fail(f"{e}\n{_report(text, applied)}")


@fuzz(500)
@given(st.data())
def test_text_mutations(data):
    """Raw damage: deleted and inserted characters, duplicated and swapped lines, tabs, truncation."""
    ch = M.HypothesisChooser(data)
    path, text, _ = _seed(ch)
    text, applied = M.mutate_text(text, ch, ch.integer(1, 3))
    try:
        event(M.check_outcome(text, path.parent))
    except M.FuzzFailure as e:
        pytest.fail(f"{e}\n{_report(text, applied)}")


@fuzz(300)
@given(st.data())
def test_set_overrides(data):
    """`--set key=value` with any key and any value (parsed as YAML, like the CLI does)."""
    ch = M.HypothesisChooser(data)
    path, text, doc = _seed(ch)
    params = list(doc.get("params") or {})
    key = ch.choice(params + ["nope", "train.epochs", "export.opset", "a.b.c"])
    value = M.random_value(ch, M.names_in(doc))
    try:
        M.check_outcome(text, path.parent, {key: value})
    except M.FuzzFailure as e:
        pytest.fail(f"{e}\n--set {key}={value!r} on {path.name}")


@fuzz(200)
@given(st.text(max_size=300))
def test_arbitrary_text(text):
    """Any text at all, not only damaged specs."""
    try:
        M.check_outcome(text, M.ROOT)
    except M.FuzzFailure as e:
        pytest.fail(f"{e}\n--- text ---\n{text!r}")


def test_cli_overrides_are_parsed_safely(capsys):
    """`--set` values go through YAML's safe loader: a tag is a plain string, never an object."""
    from builder.commands.cli import main
    path = str(M.ROOT / "specs" / "examples" / "tiny_resnet.yaml")
    for value in ("!!python/object/apply:os.system ['true']", "${__import__('os')}", "[1, {a: 2}]", "1e400"):
        code = main(["check", path, "--set", f"width={value}"])
        err = capsys.readouterr().err
        assert code == 2 and "Traceback" not in err and err.strip(), (value, err)
