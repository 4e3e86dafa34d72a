"""`build bench`: the table's rows and output differences (speed itself is measured in benchmarks/)."""
from pathlib import Path

from builder.commands.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_bench_prints_one_row_per_batch(capsys):
    argv = ["bench", str(ROOT / "specs" / "mlp_digits.yaml"), "--set", "hidden=8", "--batch", "1,4",
            "--no-compile", "--seconds", "0.05", "--threads", "1"]
    assert main(argv) == 0
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| mlp_digits |")]
    assert [r.split("|")[2].strip() for r in rows] == ["1", "4"]
    for r in rows:
        cells = [c.strip() for c in r.split("|")]
        assert cells[4] == "-" and float(cells[7]) < 1e-4  # no torch.compile column; ORT matches eager


def test_bench_rejects_bad_batches(capsys):
    assert main(["bench", str(ROOT / "specs" / "mlp_digits.yaml"), "--batch", "1,x"]) == 2
    assert "--batch 1,x" in capsys.readouterr().err
