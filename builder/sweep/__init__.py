"""`build sweep`: hyper-parameter search over a spec's params and train keys, on Optuna.

The `sweep:` section is read and checked with the rest of the spec (space.py, no Optuna import, so
`build check` stays fast). Running a sweep (driver.py) asks Optuna's study for trials, hands each to a
worker process (worker.py) that trains it into an ordinary run folder, and writes the results
(results.py: trials.csv, best.yaml, plots). The study lives in a database (study.py), so a sweep can be
resumed, and several processes or machines can share it.
"""
from builder.sweep.space import Dim, SweepConfig, read_sweep

__all__ = ["Dim", "SweepConfig", "read_sweep", "sweep"]


def sweep(spec, **kwargs):
    """Run a sweep from Python; see builder.sweep.driver.run_sweep for the arguments."""
    from builder.sweep.driver import run_sweep
    return run_sweep(spec, **kwargs)
