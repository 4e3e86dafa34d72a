"""What a sweep leaves in its folder, rewritten whole after every run of `build sweep`:

    trials.csv        one row per trial: trial, its params, the metric, state, duration (s), reason
    best.yaml         the best trial's spec (params and train keys filled in), trainable with `build train`
    history.png       Optuna's optimisation history        importances.png  parameter importances
    parallel.png      parallel coordinates (slice.png for a one-parameter space)

and a summary table on the console.
"""
from __future__ import annotations

import io
import math
import os
import warnings
from pathlib import Path

import yaml

from builder.core import csv_cells
from builder.core.io_utils import atomic_write_bytes, atomic_write_text
from builder.sweep.space import set_dotted
from builder.sweep.study import is_lost, optuna

SUMMARY_ROWS = 10


def write_all(study, cfg, spec, spec_path, sets, folder: Path, out):
    trials = study.get_trials(deepcopy=False)
    write_csv(trials, cfg, folder / "trials.csv")
    best = best_trial(study)
    if best is not None:
        write_best(spec_path, {**sets, **best.params}, best, cfg, folder / "best.yaml")
    drawn = write_plots(study, cfg, folder)
    print_summary(trials, cfg, best, folder, drawn, out)


def best_trial(study):
    try:
        return study.best_trial
    except ValueError:  # no complete trial yet
        return None


def state_of(t) -> str:
    return "LOST" if is_lost(t) else t.state.name


def reason_of(t) -> str:
    if t.state.name != "FAIL":
        return ""
    return t.user_attrs.get("fail_reason") or "lost: its sweep process stopped (no heartbeat)"


def duration_of(t):
    if t.datetime_start is None or t.datetime_complete is None:
        return None
    return (t.datetime_complete - t.datetime_start).total_seconds()


def write_csv(trials, cfg, path: Path):
    keys = [d.key for d in cfg.space]
    buf = io.StringIO()
    w = csv_cells.writer(buf, lineterminator="\n")
    w.writerow(["trial", *keys, cfg.metric, "state", "duration", "reason"])
    for t in trials:
        value = t.value if t.state.name in ("COMPLETE", "PRUNED") and t.value is not None else (
            t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None)
        seconds = duration_of(t)
        w.writerow([t.number, *[t.params.get(k, "") for k in keys], "" if value is None else f"{value:.6g}",
                    state_of(t), "" if seconds is None else f"{seconds:.2f}", reason_of(t)])
    atomic_write_text(path, buf.getvalue())


def write_best(spec_path, values: dict, best, cfg, path: Path):
    """The spec file with the best trial's params and train keys (and the sweep's --set) written in, its
    sweep section removed and its `use:` paths made relative to the new file."""
    from builder.text.readers import read_yaml_file

    source = Path(spec_path)
    doc = read_yaml_file(source, "spec")
    doc.pop("sweep", None)
    for key, value in values.items():
        if "." not in key:
            doc.setdefault("params", {})[key] = value
            continue
        set_dotted(doc, key, value)
    uses = doc.get("use")
    if uses:
        uses = [uses] if isinstance(uses, str) else uses
        doc["use"] = [os.path.relpath((source.parent / u).resolve(), path.parent.resolve()) for u in uses]
    header = (f"# best trial {best.number} of the sweep of {source}: {cfg.metric} = {best.value:.6g}\n"
              f"# {', '.join(f'{k}={v}' for k, v in values.items())}\n"
              f"# train it as is: build train {path}\n")
    atomic_write_text(path, header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=110,
                                                      default_flow_style=None))


def write_plots(study, cfg, folder: Path) -> list:
    """The plots as PNG files; returns the names written."""
    import matplotlib.pyplot as plt

    drawn = []
    for name, fig in figures(study, cfg):
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90)
        plt.close(fig)
        atomic_write_bytes(folder / name, buf.getvalue())
        drawn.append(name)
    return drawn


def figures(study, cfg) -> list:
    """[(file name, matplotlib Figure)]; a plot that needs more trials (importances before two complete
    ones) is left out. Parallel coordinates are drawn by builder.sweep.plots (legible at a few trials);
    the importances say how many trials they rest on."""
    import matplotlib
    matplotlib.use("Agg")

    from builder.sweep.plots import importance_title, parallel_figure

    vis = optuna().visualization.matplotlib
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    if not complete:
        return []
    plots = [("history.png", vis.plot_optimization_history)]
    if len(complete) >= 2:
        plots.append(("importances.png", vis.plot_param_importances))
    plots.append(("parallel.png", None) if len(cfg.space) > 1 else ("slice.png", vis.plot_slice))
    out = []
    for name, plot in plots:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                fig = parallel_figure(trials, cfg) if plot is None else _figure(plot(study, target_name=cfg.metric))
            except (ValueError, RuntimeError, ZeroDivisionError):
                continue  # too few distinct values for this plot yet
        if name == "importances.png":
            ax = fig.axes[0]
            for loc in ("left", "right"):  # Optuna's own title sits left
                ax.set_title("", loc=loc)
            ax.set_title(importance_title(len(complete)), fontsize=11)
            fig.tight_layout()
        out.append((name, fig))
    return out


def _figure(axes):
    """The figure of an Optuna matplotlib plot, sized like ours."""
    ax = axes.flat[0] if hasattr(axes, "flat") else axes
    fig = ax.figure
    fig.set_size_inches(7, 4.5)
    fig.tight_layout()
    return fig


def print_summary(trials, cfg, best, folder, drawn, out):
    """The best trials first (then the others), one line each, and where the results are."""
    keys = [d.key for d in cfg.space]
    sign = -1 if cfg.direction == "maximize" else 1

    def rank(t):
        ok = t.state.name == "COMPLETE" and t.value is not None and math.isfinite(t.value)
        return (0 if ok else 1, sign * t.value if ok else 0, t.number)

    rows = [["trial", *keys, cfg.metric, "state", "seconds"]]
    ordered = sorted(trials, key=rank)
    for t in ordered[:SUMMARY_ROWS]:
        seconds = duration_of(t)
        rows.append([str(t.number), *[_short(t.params.get(k, "")) for k in keys],
                     "" if t.value is None else f"{t.value:.4g}", state_of(t),
                     "" if seconds is None else f"{seconds:.1f}"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, r in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip(), file=out)
        if i == 0:
            print("  ".join("-" * w for w in widths), file=out)
    if len(ordered) > SUMMARY_ROWS:
        print(f"... {len(ordered) - SUMMARY_ROWS} more in {folder / 'trials.csv'}", file=out)
    states = {}
    for t in trials:
        states[state_of(t)] = states.get(state_of(t), 0) + 1
    print(f"{len(trials)} trials (" + ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items())) + ")",
          file=out)
    if best is not None:
        print(f"best: trial {best.number}, {cfg.metric} {best.value:.4g}: {folder / 'best.yaml'} "
              f"(run folder {folder / f'trial-{best.number}'})", file=out)
    if drawn:
        print("plots: " + ", ".join(str(folder / n) for n in drawn), file=out)


def _short(v):
    return f"{v:.4g}" if isinstance(v, float) else str(v)
