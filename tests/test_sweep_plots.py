"""Issue 20 item 16: the sweep's pictures are legible at a handful of trials. Parallel coordinates: every
line has at least WCAG 3:1 contrast against the background (Optuna drew the worst trial near-white) and no
two labels overlap (matplotlib's own text extents); the importances say how many trials they rest on.
A property over random spaces (2-7 keys of every kind, long dotted names) and 2-12 trials, 6 included."""
from __future__ import annotations

import random

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from builder.sweep.plots import MIN_CONTRAST, all_texts, contrast, overlapping, parallel_figure  # noqa: E402
from builder.sweep.results import figures  # noqa: E402
from builder.sweep.space import Dim, SweepConfig  # noqa: E402
from builder.sweep.study import distributions, optuna  # noqa: E402

KEYS = ["hidden", "train.optimizer.lr", "train.optimizer.weight_decay", "dropout", "train.data.batch_size",
        "train.schedule.warmup_steps", "layers", "train.optimizer.type"]


def _dim(rng, key):
    kind = rng.choice(["int", "float", "choice"])
    if kind == "int":
        return Dim(key, "int", 1, rng.choice([8, 64, 1024]), log=rng.random() < 0.5)
    if kind == "float":
        log = rng.random() < 0.6
        return Dim(key, "float", 1e-5 if log else 0.0, rng.choice([0.5, 1.0, 3e2]), log=log)
    return Dim(key, "choice", choices=tuple(rng.sample(["adam", "sgd", "adamw", "rmsprop", "lion", 16, 32], rng.randint(2, 5))))


def _study(seed, n_trials=None):
    rng = random.Random(seed)
    space = tuple(_dim(rng, k) for k in rng.sample(KEYS, rng.randint(2, 7)))
    cfg = SweepConfig("val.accuracy", rng.choice(["maximize", "minimize"]), 6, "random", "none", seed, space)
    optuna().logging.set_verbosity(optuna().logging.WARNING)
    study = optuna().create_study(direction=cfg.direction, sampler=optuna().samplers.RandomSampler(seed=seed))
    for _ in range(n_trials or rng.choice([2, 3, 6, 6, 9, 12])):
        trial = study.ask(distributions(cfg))
        study.tell(trial, rng.uniform(0.1, 0.99))
    return study, cfg


@pytest.mark.parametrize("seed", range(16))
def test_parallel_coordinates_lines_stand_out_and_labels_never_overlap(seed):
    study, cfg = _study(seed, 6 if seed < 6 else None)
    fig = parallel_figure(study.get_trials(), cfg)
    try:
        ax = fig.axes[0]
        background = ax.get_facecolor()
        lines = [line for line in ax.get_lines() if isinstance(line, Line2D)]
        trial_lines = [line for line in lines if len(line.get_xdata()) == len(cfg.space) + 1]
        assert len(trial_lines) == len(study.trials)
        for line in lines:
            assert contrast(matplotlib.colors.to_rgba(line.get_color()), background) >= MIN_CONTRAST
        fig.canvas.draw()
        assert overlapping(all_texts(fig), fig.canvas.get_renderer()) == []
        assert ax.get_title() == f"Parallel coordinates: {len(study.trials)} complete trials"
    finally:
        plt.close(fig)


def test_optunas_own_parallel_plot_failed_both_checks():
    """The checks above are not vacuous: Optuna's plot of the same 6 trials, at the size we save, has a line
    under 3:1 and overlapping labels."""
    study, cfg = _study(0, 6)
    ax = optuna().visualization.matplotlib.plot_parallel_coordinate(study, target_name=cfg.metric)
    fig = ax.figure
    try:
        fig.set_size_inches(7, 4.5)
        fig.tight_layout()
        fig.canvas.draw()  # maps each line's value to its colour
        background = ax.get_facecolor()
        colors = [c for coll in ax.collections for c in coll.get_colors()]
        assert colors and min(contrast(c, background) for c in colors) < MIN_CONTRAST
        assert overlapping(all_texts(fig), fig.canvas.get_renderer())
    finally:
        plt.close(fig)


@pytest.mark.parametrize("seed", [0, 1])
def test_every_sweep_figure_is_legible_and_the_importances_say_how_few_trials(seed):
    study, cfg = _study(seed, 6)
    drawn = figures(study, cfg)
    try:
        assert [name for name, _ in drawn] == ["history.png", "importances.png", "parallel.png"]
        for name, fig in drawn:
            fig.canvas.draw()
            assert overlapping(all_texts(fig), fig.canvas.get_renderer()) == [], name
        title = dict(drawn)["importances.png"].axes[0].get_title()
        assert "from 6 complete trials (few: a rough guide)" in title
        assert not dict(drawn)["importances.png"].axes[0].get_title(loc="left")
    finally:
        for _, fig in drawn:
            plt.close(fig)
