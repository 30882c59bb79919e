"""`lossdsl tune` and `lossdsl.search_space`: the params' declared ranges as an Optuna search
space, and a study that loads the spec once and sets each trial's params on it.

The space, param by param:
- a param with a number for its default and an `in` range is a float between the range's
  ends; an infinite end becomes the default times 100 (upward) or divided by 100 (toward an
  open 0), an open end is stepped inside; log scale when the low end is positive and the high
  end is at least 100 times it;
- a static choice (`param agg = "a" in {"a", "b"}`) is categorical over its choices;
- params without a range, and schedules of `step`, are not searched.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lossdsl.ir import ParamSpec, SpecIR
from lossdsl.tools import ToolError, require
from lossdsl.tools.progress import progress

WIDEN = 100.0  # how far an infinite end reaches past the default
DECADES = 100.0  # a range at least this wide (hi / lo) is searched on a log scale


def search_space(spec: str | Path | SpecIR) -> dict[str, Any]:
    """`{name: optuna distribution}` for every param with a declared range or choices."""
    optuna = require("optuna", "tune")
    ir = spec if isinstance(spec, SpecIR) else _build(spec)
    space: dict[str, Any] = {}
    for choice in ir.choices:
        space[choice.name] = optuna.distributions.CategoricalDistribution(list(choice.choices))
    for param in ir.params:
        bounds = float_bounds(param)
        if bounds is not None:
            low, high, log = bounds
            space[param.name] = optuna.distributions.FloatDistribution(low, high, log=log)
    return space


def _build(spec: str | Path) -> SpecIR:
    from lossdsl.api import build_ir

    return build_ir(spec)


def float_bounds(param: ParamSpec) -> tuple[float, float, bool] | None:
    """(low, high, log) for a param with a numeric default and a numeric range."""
    rng, default = param.range, param.default
    if rng is None or default is None or isinstance(rng.lo, str) or isinstance(rng.hi, str):
        return None
    low, high = float(rng.lo), float(rng.hi)
    if math.isinf(high):
        high = default * WIDEN if default > 0 else max(default, low) + WIDEN
    if math.isinf(low):
        low = default / WIDEN if default > 0 else min(default, high) - WIDEN
    if low == 0 and not rng.lo_closed:
        low = default / WIDEN if default > 0 else high / WIDEN**2
    if not rng.lo_closed and low == float(rng.lo):
        low = math.nextafter(low, math.inf)
    if not rng.hi_closed and high == float(rng.hi):
        high = math.nextafter(high, -math.inf)
    if not low < high:
        return None
    return low, high, low > 0 and high / low >= DECADES


def grid_points(space: dict[str, Any], trials: int) -> dict[str, list[Any]]:
    """About `trials` points in all: every choice, and evenly (or geometrically) spaced
    values of each float param."""
    floats = [name for name, d in space.items() if not hasattr(d, "choices")]
    choices = math.prod(len(d.choices) for d in space.values() if hasattr(d, "choices"))
    per_float = max(2, round((trials / max(choices, 1)) ** (1 / max(len(floats), 1))))
    points: dict[str, list[Any]] = {}
    for name, d in space.items():
        if hasattr(d, "choices"):
            points[name] = list(d.choices)
        elif d.log:
            ratio = (d.high / d.low) ** (1 / (per_float - 1))
            points[name] = [d.low * ratio**i for i in range(per_float)]
        else:
            step = (d.high - d.low) / (per_float - 1)
            points[name] = [d.low + step * i for i in range(per_float)]
    return points


def load_objective(reference: str) -> Callable[[Any], float]:
    """`module:function` (imported from the working directory too) or `file.py:function`."""
    target, colon, name = reference.rpartition(":")
    if not colon or not target or not name:
        raise ToolError(f"--objective takes module:function, got {reference!r}")
    try:
        if target.endswith(".py"):
            spec = importlib.util.spec_from_file_location(Path(target).stem, target)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {target}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            if "" not in sys.path and str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))
            module = importlib.import_module(target)
    except (ImportError, OSError, SyntaxError) as error:
        raise ToolError(f"--objective {reference}: cannot import {target}: {error}") from None
    function = getattr(module, name, None)
    if not callable(function):
        raise ToolError(f"--objective {reference}: {target} has no function {name}")
    return function


@dataclass
class TuneResult:
    best_params: dict[str, Any]
    best_value: float
    best_trial: int
    trials: int
    study: Any


def tune(
    spec: str | Path,
    objective: Callable[[Any], float],
    trials: int,
    sampler: str = "tpe",
    study_path: Path | None = None,
    seed: int = 0,
    direction: str = "minimize",
) -> TuneResult:
    """Search the params of `spec` for the best `objective(loss_fn)`; `loss_fn` is the module
    `lossdsl.load(spec)` builds, with the trial's params set. The study goes to
    `study_path` (an Optuna journal file; `optuna.load_study` reads it back)."""
    optuna = require("optuna", "tune")
    import lossdsl

    if trials < 1:
        raise ToolError(f"--trials must be at least 1, got {trials}")
    if direction not in ("minimize", "maximize"):
        raise ToolError(f"--direction is minimize or maximize, not {direction!r}")
    loss_fn = lossdsl.load(spec)
    space = search_space(loss_fn.ir)
    if not space:
        raise ToolError(f"{loss_fn.ir.name} has no param with a range or choices to search")
    if sampler == "tpe":
        chosen = optuna.samplers.TPESampler(seed=seed, multivariate=True)
    elif sampler == "grid":
        points = grid_points(space, trials)
        chosen = optuna.samplers.GridSampler(points, seed=seed)
        trials = min(trials, math.prod(len(v) for v in points.values()))
    else:
        raise ToolError(f"--sampler is grid or tpe, not {sampler!r}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = None
    if study_path is not None:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        storage = JournalStorage(JournalFileBackend(str(study_path)))
    study = optuna.create_study(
        study_name=loss_fn.ir.name,
        direction=direction,
        sampler=chosen,
        storage=storage,
        load_if_exists=True,  # the same file again: the study goes on
    )

    def run(trial: Any) -> float:
        values = {name: _suggest(trial, name, d) for name, d in space.items()}
        loss_fn.set_params(**values)
        return float(objective(loss_fn))

    with progress(f"tuning {loss_fn.ir.name}", total=trials) as advance:
        study.optimize(run, n_trials=trials, callbacks=[lambda study, trial: advance()])
    best = study.best_trial
    return TuneResult(dict(best.params), float(best.value), best.number, len(study.trials), study)


def _suggest(trial: Any, name: str, distribution: Any) -> Any:
    if hasattr(distribution, "choices"):
        return trial.suggest_categorical(name, distribution.choices)
    return trial.suggest_float(name, distribution.low, distribution.high, log=distribution.log)
