"""The `sweep:` section: what to optimise and over which params and train keys, checked like the rest of
the spec (every error with file:line:col, unknown keys with did-you-mean). Plain data only: no Optuna
import here, so `build check` does not pay for it.

    sweep:
      metric: val.accuracy          # a metric the run records (val.*, train.loss, test.*)
      direction: maximize
      trials: 20
      sampler: tpe                  # tpe | random | grid
      pruner: median                # none | median | hyperband
      space:
        hidden: {int: [32, 512], log: true}
        train.optimizer.lr: {float: [1.0e-4, 1.0e-1], log: true}
        train.optimizer.type: {choice: [sgd, adam]}
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass

from builder.core.errors import UserError, did_you_mean

SWEEP_KEYS = ("metric", "direction", "trials", "sampler", "pruner", "seed", "space")
DIM_KINDS = ("int", "float", "choice")
DIM_KEYS = DIM_KINDS + ("log", "step")
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("none", "median", "hyperband")
DIRECTIONS = ("maximize", "minimize")


@dataclass(frozen=True)
class Dim:
    """One axis of the search space: a spec param (`hidden`) or a train key (`train.optimizer.lr`)."""
    key: str
    kind: str                    # int | float | choice
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()
    source: str = ""             # file:line:col of the key, for messages

    def values(self):
        """Every value of a grid axis (choices, or a stepped range)."""
        if self.kind == "choice":
            return list(self.choices)
        step = self.step or 1
        n = int(math.floor((self.high - self.low) / step + 1e-9)) + 1
        return [self.low + i * step if self.kind == "float" else int(self.low + i * step) for i in range(n)]


@dataclass(frozen=True)
class SweepConfig:
    metric: str
    direction: str
    trials: int
    sampler: str
    pruner: str
    seed: int | None
    space: tuple                 # of Dim

    def fingerprint(self) -> str:
        """What a study's trials depend on (metric, direction, space): a resumed study must match it."""
        dims = [{k: v for k, v in asdict(d).items() if k != "source"} for d in self.space]
        text = json.dumps({"metric": self.metric, "direction": self.direction, "space": dims}, sort_keys=True,
                          default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def metric_names(training) -> list:
    """The metrics a run of this TrainConfig records (history rows and test.json)."""
    from builder.training.metrics import make_metric

    if training.mode == "gan":
        return ["train.d_loss", "train.g_loss", "val.mean_distance", "test.mean_distance"]
    names = []
    for m in training.metrics:
        try:
            names.append(make_metric(m)[0])
        except UserError:
            pass  # reported by the train checks
    return ["train.loss", "val.loss", "test.loss"] + [f"{p}.{n}" for n in names for p in ("val", "test")]


def set_dotted(doc: dict, dotted: str, value) -> None:
    """Set `a.b.c` in nested mappings as `--set` does (a non-mapping on the way becomes one)."""
    parts = dotted.split(".")
    for p in parts[:-1]:
        if not isinstance(doc.get(p), dict):
            doc[p] = {}
        doc = doc[p]
    doc[parts[-1]] = value


def default_direction(metric: str) -> str:
    last = metric.split(".")[-1]
    return "maximize" if last in ("accuracy", "r2") or last.startswith("top") else "minimize"


def read_sweep(doc, err, params: dict, train: dict, training, networks):
    """The checked SweepConfig of `doc["sweep"]`, or None; each mistake is reported through
    `err(message, loc, node=..., hint=...)` (the spec reader's error collector). `train` is the plain
    train section, `training` its TrainConfig (None when it has errors of its own, reported already)."""
    section = doc.get("sweep")
    if section is None:
        return None
    if not isinstance(section, dict):
        err("sweep must be a mapping (metric, direction, trials, sampler, pruner, space)", doc.loc_of("sweep"),
            node="sweep")
        return None
    ok = True

    def bad(message, key=None, hint=None, where=None, node=None):
        nonlocal ok
        ok = False
        err(message, (where or section).loc_of(key) if key is not None else (where or section).loc,
            node=node or ("sweep." + str(key) if key is not None else "sweep"), hint=hint)

    for key in section:
        if key not in SWEEP_KEYS:
            bad(f"unknown key '{key}'", key, hint=did_you_mean(key, SWEEP_KEYS) or f"known: {', '.join(SWEEP_KEYS)}")
    if not train:
        bad("a sweep trains each trial: the spec needs a train: section")
        return None
    metric = section.get("metric", "val.loss")
    known = metric_names(training) if training is not None else None
    if not isinstance(metric, str) or (known is not None and metric not in known):
        bad(f"the runs record no metric {metric!r}", "metric",
            hint=did_you_mean(str(metric), known or []) or f"known: {', '.join(known or [])}")
    direction = section.get("direction", default_direction(str(metric)))
    if direction not in DIRECTIONS:
        bad(f"direction must be maximize or minimize, not {direction!r}", "direction",
            hint=did_you_mean(str(direction), DIRECTIONS))
    trials = section.get("trials", 20)
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        bad(f"trials must be a whole number >= 1, got {trials!r}", "trials")
    sampler = section.get("sampler", "tpe")
    if sampler not in SAMPLERS:
        bad(f"unknown sampler {sampler!r}", "sampler", hint=did_you_mean(str(sampler), SAMPLERS)
            or f"known: {', '.join(SAMPLERS)}")
    pruner = section.get("pruner", "none")
    pruner = "none" if pruner is None or pruner is False else pruner
    if pruner not in PRUNERS:
        bad(f"unknown pruner {pruner!r}", "pruner", hint=did_you_mean(str(pruner), PRUNERS)
            or f"known: {', '.join(PRUNERS)}")
    seed = section.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        bad(f"seed must be a whole number, got {seed!r}", "seed")
    space = section.get("space")
    if not isinstance(space, dict) or not space:
        bad("space must be a mapping of param or train key: {int|float|choice: ...}", "space"
            if "space" in section else None)
        return None
    dims = []
    for key, body in space.items():
        dim = _read_dim(key, body, space, err, params, train if training is not None else None, networks)
        if dim is None:
            ok = False
        elif sampler == "grid" and dim.kind == "float" and dim.step is None:
            ok = False
            err("the grid sampler needs a step for a float range (or a choice)", space.loc_of(key),
                node=f"sweep.space.{key}")
        else:
            dims.append(dim)
    if not ok:
        return None
    return SweepConfig(metric=metric, direction=direction, trials=trials, sampler=sampler, pruner=pruner,
                       seed=seed, space=tuple(dims))


def _read_dim(key, body, space, err, params, train, networks):
    node = f"sweep.space.{key}"
    loc = space.loc_of(key)
    where = "{}:{}".format(*loc) if loc else ""

    def bad(message, at=None, hint=None):
        err(message, body.loc_of(at) if at is not None and isinstance(body, dict) else loc, node=node, hint=hint)

    if not _key_exists(key, loc, node, err, params, train):
        return None
    if not isinstance(body, dict):
        bad("give {int: [low, high]}, {float: [low, high]} or {choice: [a, b, ...]}")
        return None
    for k in body:
        if k not in DIM_KEYS:
            bad(f"unknown key '{k}'", k, hint=did_you_mean(k, DIM_KEYS) or f"known: {', '.join(DIM_KEYS)}")
            return None
    kinds = [k for k in DIM_KINDS if k in body]
    if len(kinds) != 1:
        bad("give exactly one of int, float, choice" + (f" (found {', '.join(kinds)})" if kinds else ""))
        return None
    kind = kinds[0]
    log = body.get("log", False)
    step = body.get("step")
    if not isinstance(log, bool):
        bad(f"log must be true or false, got {log!r}", "log")
        return None
    if kind == "choice":
        choices = body["choice"]
        if not isinstance(choices, list) or not choices:
            bad("choice must be a non-empty list of values", "choice")
            return None
        if any(not (c is None or isinstance(c, (bool, int, float, str))) for c in choices):
            bad("choices must be plain values (numbers, strings, booleans)", "choice")
            return None
        if len({json.dumps(c) for c in choices}) != len(choices):
            bad("choices must differ from each other", "choice")
            return None
        if log or step is not None:
            bad("log and step are for int and float ranges, not choice", "log" if log else "step")
            return None
        dim = Dim(key, kind, choices=tuple(choices), source=where)
    else:
        bounds = body[kind]
        number = int if kind == "int" else (int, float)
        if (not isinstance(bounds, list) or len(bounds) != 2
                or any(isinstance(b, bool) or not isinstance(b, number) for b in bounds)):
            bad(f"{kind} takes a range [low, high] of {'whole numbers' if kind == 'int' else 'numbers'}, "
                f"got {bounds!r}", kind)
            return None
        low, high = bounds
        if not low < high:
            bad(f"the range [{low}, {high}] is empty: low must be below high", kind)
            return None
        if log and low <= 0:
            bad(f"a log range must be above 0, got [{low}, {high}]", kind)
            return None
        if step is not None:
            if isinstance(step, bool) or not isinstance(step, number) or step <= 0:
                bad(f"step must be a {'whole ' if kind == 'int' else ''}number above 0, got {step!r}", "step")
                return None
            if log:
                bad("a range takes log or step, not both (Optuna samples one or the other)", "step")
                return None
        if kind == "float":
            low, high = float(low), float(high)
            step = None if step is None else float(step)
        dim = Dim(key, kind, low=low, high=high, log=log, step=step, source=where)
    if key.startswith("train.") and train is not None:
        _check_train_values(dim, loc, node, err, train, networks)
    return dim


def _key_exists(key, loc, node, err, params, train) -> bool:
    """A space key is a spec param (`hidden`) or a key of the train section (`train.optimizer.lr`)."""
    if not isinstance(key, str) or not key:
        err(f"space key {key!r} must be a param name or train.KEY", loc, node="sweep.space")
        return False
    if key.startswith("train."):
        return True  # its values are checked against the train section (_check_train_values)
    if key in params:
        return True
    head = key.split(".")[0]
    if "." in key:
        hint = did_you_mean(head, ["train"])
        err(f"'{key}' is neither a param nor a train key (train keys start with 'train.')", loc, node=node,
            hint=hint)
        return False
    hint = did_you_mean(key, list(params)) or f"params are: {', '.join(params) or 'none'}"
    err(f"the spec has no param '{key}'", loc, node=node, hint=hint)
    return False


def _check_train_values(dim, loc, node, err, train, networks):
    """Each end of the range (each choice) must make a valid train section: this catches unknown train
    keys (with did-you-mean, from the train checks) and values the trainer refuses."""
    import copy

    key = dim.key.split(".")[1]
    if train_problem(train, networks, key):
        return  # the train section is wrong as written: reported there, not again for each space key
    for value in dim.choices if dim.kind == "choice" else (dim.low, dim.high):
        values = copy.deepcopy(train)
        set_dotted(values, dim.key.removeprefix("train."), value)
        problem = train_problem(values, networks, key)
        if problem:
            err(f"{problem} (with {dim.key}={value!r})", loc, node=node)
            return


def train_problem(values, networks, key) -> str | None:
    """The first mistake of a plain train section (its structure, then the names and options under
    `key`, the top-level key a space value changes), or None."""
    from builder.training.checks import option_errors
    from builder.spec.train_section import from_plain

    try:
        config = from_plain(values, networks)
    except UserError as e:
        return str(e).splitlines()[0]
    others = {"data", "loss", "metrics", "optimizer", "schedule", "init"} - {key}
    for d in option_errors(config, skip=others):
        return f"{d.node}: {d.message}" + (f" ({d.hint})" if d.hint else "")
    return None


def sweep_schema() -> dict:
    """JSON Schema of the `sweep:` section (for `build schema`)."""
    num = {"type": "number"}
    dim = {"type": "object", "additionalProperties": False, "minProperties": 1,
           "properties": {"int": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
                          "float": {"type": "array", "items": num, "minItems": 2, "maxItems": 2},
                          "choice": {"type": "array", "minItems": 1},
                          "log": {"type": "boolean"}, "step": num},
           "oneOf": [{"required": ["int"]}, {"required": ["float"]}, {"required": ["choice"]}]}
    props = {
        "metric": {"type": "string", "description": "the metric to optimise: val.accuracy, val.loss, test.*"},
        "direction": {"enum": list(DIRECTIONS)},
        "trials": {"type": "integer", "minimum": 1},
        "sampler": {"enum": list(SAMPLERS)},
        "pruner": {"enum": list(PRUNERS) + [None]},
        "seed": {"type": "integer"},
        "space": {"type": "object", "additionalProperties": dim, "minProperties": 1,
                  "description": "param name or train.KEY: {int|float: [low, high], log, step} or {choice: [...]}"},
    }
    assert set(props) == set(SWEEP_KEYS)
    return {"type": "object", "required": ["space"], "additionalProperties": False, "properties": props}
