"""Outputs that cannot be written: a run folder in use by another training, a finished run, a full disk
(ENOSPC injected into the writes, and a real kernel limit on file size), an unwritable target. Each is a
one-line error (exit 2) and leaves no partial file: the previous checkpoint, model or output stays whole."""
from __future__ import annotations

import errno
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import builder
from builder.training import checkpoint
from builder.commands.cli import main
from builder.core.errors import UserError
from builder.training.runlog import RunLock


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_second_training_cannot_write_into_a_locked_run_folder(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    lock = RunLock(run_dir)
    lock.acquire()  # as a running training holds it (flock: a second open file description conflicts)
    try:
        assert (run_dir / ".lock").read_text().strip() == str(os.getpid())
        assert main(["train", "specs/xor_mlp.yaml", "--run-dir", str(run_dir), "--quiet", "--epochs", "1"]) == 2
        assert capsys.readouterr().err.strip() == (f"run folder {run_dir} is in use by another training "
                                                   f"(pid {os.getpid()}); wait for it to finish, or choose another --run-dir")
        assert main(["train", "--resume", str(run_dir), "--quiet"]) == 2  # resume is locked out too
    finally:
        lock.release()
    assert not (run_dir / ".lock").exists()
    assert main(["train", "specs/xor_mlp.yaml", "--run-dir", str(run_dir), "--quiet", "--epochs", "1"]) == 0


def test_a_stale_lock_of_a_dead_training_is_taken_over(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run_dir / ".lock").write_text(f"{dead.pid}\n")  # what a SIGKILLed training leaves behind
    _, history, _ = builder.train("specs/xor_mlp.yaml", run_dir=run_dir, quiet=True, epochs=1)
    assert len(history) == 1 and not (run_dir / ".lock").exists()


def test_a_finished_run_is_not_overwritten_without_overwrite(tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = ["train", "specs/xor_mlp.yaml", "--run-dir", str(run_dir), "--quiet", "--epochs", "2"]
    assert main(argv) == 0
    assert capsys.readouterr().err.startswith("test: ")  # --quiet still prints the test line
    before = (run_dir / "last.pt").read_bytes()
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == (
        f"run folder {run_dir} already holds a run; continue it with --resume {run_dir}, start it over with "
        "--overwrite, or choose another --run-dir")
    assert (run_dir / "last.pt").read_bytes() == before
    assert main(["train", "--resume", str(run_dir), "--epochs", "3", "--quiet"]) == 0
    assert checkpoint.load(run_dir / "last.pt")["epoch"] == 3
    assert main(argv + ["--overwrite"]) == 0
    assert checkpoint.load(run_dir / "last.pt")["epoch"] == 2
    assert main(["train", "--resume", str(run_dir), "--overwrite"]) == 2
    # a folder whose run never finished an epoch (no checkpoint, no metrics) is simply reused
    (tmp_path / "fresh").mkdir()
    (tmp_path / "fresh" / "resolved.yaml").write_text("name: x\n")
    assert main(["train", "specs/xor_mlp.yaml", "--run-dir", str(tmp_path / "fresh"), "--quiet", "--epochs", "1"]) == 0


def test_full_disk_during_a_checkpoint_write_is_one_line_and_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    builder.train("specs/xor_mlp.yaml", run_dir=run_dir, quiet=True, epochs=2)
    good = checkpoint.load(run_dir / "last.pt")
    real_open = open

    class FullDisk:
        """A file on a disk with 4 KB left: writes past that fail with ENOSPC, as the kernel's do."""

        def __init__(self, f):
            self.f, self.room = f, 4096

        def write(self, data):
            n = len(memoryview(data).cast("B"))
            if n > self.room:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.room -= n
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(checkpoint, "open", lambda *a, **k: FullDisk(real_open(*a, **k)), raising=False)
    with pytest.raises(UserError) as info:
        builder.train(resume=run_dir, quiet=True, epochs=4)
    assert str(info.value) in (f"cannot write checkpoint {run_dir / 'last.pt'}: No space left on device",
                               f"cannot write checkpoint {run_dir / 'best.pt'}: No space left on device")
    assert leftovers(run_dir) == [] and not (run_dir / ".lock").exists()
    assert checkpoint.load(run_dir / "last.pt")["epoch"] == 2
    assert torch.equal(checkpoint.load(run_dir / "last.pt")["networks"]["model"]["head.weight"],
                       good["networks"]["model"]["head.weight"])
    monkeypatch.undo()
    # an fsync that reports the full disk (NFS, delayed allocation) is caught as well
    monkeypatch.setattr(os, "fsync", enospc)
    with pytest.raises(UserError, match=r"cannot write checkpoint .*: No space left on device"):
        checkpoint.save_atomic({"w": torch.ones(3)}, run_dir / "last.pt")
    monkeypatch.undo()
    assert leftovers(run_dir) == [] and checkpoint.load(run_dir / "last.pt")["epoch"] == 2


def test_full_disk_while_writing_run_files_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(os, "fsync", enospc)  # spec.yaml, resolved.yaml, metrics.csv, test.json
    run_dir = tmp_path / "run"
    assert main(["train", "specs/xor_mlp.yaml", "--run-dir", str(run_dir), "--quiet", "--epochs", "1"]) == 2
    # resolved.yaml is the first file of a run (it marks the folder as a run of ours, issue 21)
    assert capsys.readouterr().err.strip() == f"{run_dir / 'resolved.yaml'}: write failed: No space left on device"
    assert leftovers(run_dir) == [] and not (run_dir / "resolved.yaml").exists() and not (run_dir / ".lock").exists()
    assert not (run_dir / "spec.yaml").exists()


LIMITED = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead of killing
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
from builder.commands.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_a_real_write_limit_from_the_kernel_gives_one_line_and_no_partial_file(tmp_path):
    """No fault injection: the kernel refuses every byte past 64 KB (RLIMIT_FSIZE), as a full disk would."""
    spec = tmp_path / "wide.yaml"
    spec.write_text("spec: 1\nname: wide\ninputs:\n  x: {shape: [B, 2]}\nnodes:\n  h: {op: Linear, out_features: 4096}\n"
                    "  head: {op: Linear, out_features: 2}\ntrain:\n  data: {source: xor, n: 64}\n"
                    "  loss: cross_entropy\n  epochs: 1\n")
    run_dir = tmp_path / "run"
    out = subprocess.run([sys.executable, "-c", LIMITED, str(64 * 1024), "train", str(spec), "--run-dir",
                          str(run_dir), "--quiet", "--device", "cpu"], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip() == f"cannot write checkpoint {run_dir / 'best.pt'}: File too large"
    assert leftovers(run_dir) == [] and not (run_dir / "best.pt").exists() and not (run_dir / "last.pt").exists()


def test_export_and_predict_outputs_on_a_full_disk_or_unwritable_target(tmp_path, monkeypatch, capsys):
    onnx = tmp_path / "xor.onnx"
    assert main(["export", "specs/xor_mlp.yaml", "--random", "-o", str(onnx)]) == 0
    good = onnx.read_bytes()
    np.save(tmp_path / "x.npy", np.ones((3, 2), np.float32))
    capsys.readouterr()
    monkeypatch.setattr(os, "fsync", enospc)
    assert main(["export", "specs/xor_mlp.yaml", "--random", "-o", str(onnx)]) == 2
    assert capsys.readouterr().err.strip() == f"{onnx}: write failed: No space left on device"
    assert onnx.read_bytes() == good and leftovers(tmp_path) == []  # the old model is untouched
    out = tmp_path / "y.npy"
    assert main(["predict", str(onnx), "--input", str(tmp_path / "x.npy"), "-o", str(out)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"{out}: write failed: No space left on device"
    assert not out.exists() and leftovers(tmp_path) == []
    monkeypatch.undo()
    (tmp_path / "a_file").write_text("")
    for target, why in ((tmp_path / "a_file" / "m.onnx", "does not exist"), (tmp_path, "is a folder")):
        assert main(["export", "specs/xor_mlp.yaml", "--random", "-o", str(target)]) == 2
        assert why in capsys.readouterr().err
    assert main(["train", "specs/xor_mlp.yaml", "--run-dir", str(tmp_path / "a_file" / "run"), "--quiet"]) == 2
    assert capsys.readouterr().err.strip().startswith(f"cannot create run folder {tmp_path / 'a_file' / 'run'}: ")


def _read_only_folder(path):
    """A folder this process cannot write into: chmod 555 for an ordinary user; for root (which ignores
    permissions) a read-only tmpfs mounted there. Returns the undo function."""
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        return lambda: path.chmod(0o755)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.fail(f"cannot make a read-only folder as root here: {mounted.stderr.strip()}")
    return lambda: subprocess.run(["umount", str(path)], check=True)


def test_read_only_run_folder_is_one_line(tmp_path, capsys):
    run_dir = tmp_path / "ro"
    undo = _read_only_folder(run_dir)
    try:
        assert main(["train", "specs/xor_mlp.yaml", "--run-dir", str(run_dir), "--quiet"]) == 2
        assert capsys.readouterr().err.strip() == f"run folder {run_dir} is not writable"
    finally:
        undo()



def test_temporaries_of_every_killed_write_are_removed(tmp_path):
    """A kill can land inside any atomic write of a run: a checkpoint or a run file such as metrics.csv."""
    from builder.training import checkpoint
    left = [".last.pt.k3j2.tmp", ".best.pt.x9.tmp", ".metrics.csv.4y1aaadj.tmp", ".spec.yaml.ab.tmp"]
    kept = ["last.pt", "metrics.csv", "notes.tmp", ".lock"]
    for name in left + kept:
        (tmp_path / name).write_text("x")
    for name in (".last.pt.u7k1.tmp", ".model.onnx.2hd8.tmp"):  # the private folders of io_utils.atomic_output
        (tmp_path / name).mkdir()
        (tmp_path / name / name.split(".")[1]).write_text("half")
    checkpoint.remove_temporaries(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)


def test_every_writer_makes_its_rename_durable(tmp_path, monkeypatch):
    """Run files, checkpoints and predictions share one atomic write, which fsyncs the folder after the
    rename: a folder fsync that fails (a simulated fault) is reported by each of them, in one line."""
    import stat

    from builder.core.io_utils import atomic_write_text
    from export.predict import write_outputs
    real_fsync = os.fsync

    def folder_fsync_fails(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", folder_fsync_fails)
    writers = [(tmp_path / "spec.yaml", lambda p: atomic_write_text(p, "x"), f"{tmp_path / 'spec.yaml'}: write failed"),
               (tmp_path / "last.pt", lambda p: checkpoint.save_atomic({"w": torch.ones(2)}, p),
                f"cannot write checkpoint {tmp_path / 'last.pt'}"),
               (tmp_path / "y.npy", lambda p: write_outputs({"y": np.ones(3)}, p), f"{tmp_path / 'y.npy'}: write failed")]
    for path, write, message in writers:
        with pytest.raises(UserError) as info:
            write(path)
        assert str(info.value) == f"{message}: Input/output error"
    monkeypatch.undo()
    assert leftovers(tmp_path) == []
    assert checkpoint.load(tmp_path / "last.pt")["w"].tolist() == [1.0, 1.0]  # renamed before the folder fsync
