"""`build demo`, the README's main job, runs end to end: train, export (verified), predict, draw."""
import re

from builder.commands.cli import main


def test_demo_trains_exports_predicts_and_draws(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["demo", "--run-dir", str(run_dir), "--epochs", "2", "--images", "5"]) == 0
    capsys.readouterr()
    assert main(["demo", "--run-dir", str(run_dir), "--epochs", "2", "--images", "5"]) == 0  # runs again
    out = capsys.readouterr().out
    for name in ("best.pt", "last.pt", "metrics.csv", "mlp_digits.onnx", "forward.dot", "backward.dot",
                 "test_images.npy"):
        assert (run_dir / name).is_file(), name
    assert re.search(r"onnxruntime matches torch at 3 shapes", out)
    predictions = re.findall(r"^(\d): (\d) \((0\.\d+|1\.000)\)$", out, re.M)
    assert len(predictions) == 5
    truth = re.search(r"true labels: ([\d ]+)\)", out).group(1).split()
    # two epochs already classify most held-out digits
    assert sum(p[1] == t for p, t in zip(predictions, truth)) >= 3
