"""Multi-trial search runs as the CLI performs them, and the catalogue behind `archsearch list`.

`run_multitrial(settings, out)` creates the space, strategy and evaluator named in
`settings` through their registries, writes `config.json` (enough to rebuild all three, so
`--resume` needs nothing but the run directory), then runs the journaled search loop.
Everything is checked before the run directory is created.

Run directory: config.json, trials.jsonl (one record per trial), strategy.json (the
strategy's state after the last trial), best_arch.json (updated whenever the best
improves), result.json (at the end); with several `--objectives` also pareto.json (the
Pareto front, updated as it changes) and pareto.png (at the end).

With `workers` > 1 (or a `ray_address`) trials run in parallel on Ray or local processes
(`archsearch.workers`), each worker rebuilding the evaluator from the settings. `workers`,
`ray_address`, `cpus_per_trial` and `gpus_per_trial` are run-time settings: a resumed run
takes them anew (from the command line), not from config.json.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from archsearch._loop import Budget, Objective, SearchResult, check_objectives, search
from archsearch.constraints import Constraint
from archsearch.data import load_dataset
from archsearch.data._dataset import stratified_split
from archsearch.distributed import check_single_process
from archsearch.errors import ArchsearchError, ConfigError
from archsearch.evaluators import EVALUATORS
from archsearch.hardware import COST_METRICS, ArchCost
from archsearch.space import SearchSpace
from archsearch.spaces import SPACES
from archsearch.storage import atomic_write_json, prepare_run_dir
from archsearch.strategies import STRATEGIES, OneShotStrategy, SampleStrategy
from archsearch.workers import check_parallel_settings, executor_for_run

# Build settings of each space's trial networks, sized for the built-in 8×8 digits: each
# trial trains for seconds on 2 CPU cores. Override with --build-arg.
BUILD_DEFAULTS: dict[str, dict[str, Any]] = {
    "darts": {"channels": 8, "layers": 3},
    "nasnet": {"channels": 8},
    "nb201": {"channels": 8, "cells_per_stage": 1},
    # The paper's 1280-channel head is 4× the last stage (320); keep that ratio on digits.
    "mobilenet": {"last_channels": 128},
}
EVALUATOR_DEFAULTS: dict[str, Any] = {"epochs": 3, "batch_size": 64, "lr": 0.05}
VAL_FRACTION = 0.2  # of the training split, held out to score trials (test stays unseen)

Log = Any


def parse_assignments(items: list[str] | None, *, flag: str) -> dict[str, Any]:
    """`["population=10", "ops=[\\"a\\"]"]` -> {"population": 10, "ops": ["a"]} (JSON values,
    falling back to the plain string)."""
    result: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} expects KEY=VALUE, got {item!r}")
        try:
            result[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            result[key.strip()] = text
    return result


def parse_objectives(text: str | None) -> list[list[str]] | None:
    """`"val_acc:max,macs:min"` -> [["val_acc", "max"], ["macs", "min"]] (None: not given)."""
    if text is None:
        return None
    pairs = []
    for item in text.split(","):
        metric, sep, direction = item.strip().partition(":")
        if not sep or not metric.strip() or direction.strip() not in ("max", "min"):
            raise ConfigError(f"--objectives expects METRIC:max or METRIC:min, comma-separated "
                              f"(e.g. val_acc:max,macs:min), got {item.strip()!r}")
        pairs.append([metric.strip(), direction.strip()])
    return pairs


def objectives_from(s: Mapping[str, Any]) -> list[Objective]:
    """The settings' objectives: `--objectives`, else `--objective`/`--minimize` (with the
    MnasNet reward when `--reward-cost` is given)."""
    pairs = s.get("objectives") or [[s["objective"], s["direction"]]]
    if len(pairs) > 1:
        if s.get("reward_cost") is not None:
            raise ConfigError("--reward-cost folds the cost into one score; with several "
                              "--objectives make the cost an objective instead")
        return [Objective(metric, direction) for metric, direction in pairs]
    metric, direction = pairs[0]
    return [Objective(metric, direction, s.get("reward_cost"), s.get("reward_target"),
                      s.get("reward_weight", -0.07))]


def create_space(name: str, args: Mapping[str, Any]) -> SearchSpace:
    factory = SPACES.get(name)
    _check_kwargs(factory, args, what=f"space {name!r}", flag="--space-arg")
    try:
        return factory(**args)
    except ArchsearchError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"space {name!r}: {exc}") from None


def create_strategy(name: str, space: SearchSpace, args: Mapping[str, Any], *,
                    seed: int) -> SampleStrategy:
    cls = STRATEGIES.get(name)
    if not (isinstance(cls, type) and issubclass(cls, SampleStrategy)):
        raise ConfigError(f"strategy {name!r} is not a multi-trial strategy")
    _check_kwargs(cls, args, what=f"strategy {name!r}", flag="--strategy-arg",
                  skip=("space", "seed"))
    try:
        return cls(space, seed=seed, **args)
    except ArchsearchError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"strategy {name!r}: {exc}") from None


def _check_kwargs(fn: Any, args: Mapping[str, Any], *, what: str, flag: str,
                  skip: tuple[str, ...] = ()) -> None:
    params = inspect.signature(fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    known = [n for n, p in params.items() if n not in skip and p.kind is p.KEYWORD_ONLY]
    for key in args:
        if key not in known:
            raise ConfigError(f"{flag} {key}: {what} has no option {key!r} "
                              f"(options: {', '.join(known) or 'none'})")


def defaults_of(fn: Any, *, skip: tuple[str, ...] = ("space", "seed")) -> dict[str, Any]:
    """Keyword defaults of a factory, as JSON values (tuples become lists)."""
    out = {}
    for name, p in inspect.signature(fn).parameters.items():
        if name in skip or p.kind is not p.KEYWORD_ONLY or p.default is p.empty:
            continue
        out[name] = json.loads(json.dumps(p.default, default=str))
    return out


def catalogue(kind: str) -> dict[str, dict[str, Any]]:
    """What `archsearch list spaces|strategies` shows: defaults, sizes, descriptions."""
    if kind == "spaces":
        out = {}
        for name in SPACES.names():
            factory = SPACES.get(name)
            space = factory()
            size = space.size()
            out[name] = {"description": _first_line(factory), "defaults": defaults_of(factory),
                         "size": size if size != math.inf else "infinite",
                         "dims": len(space.dims)}
        return out
    if kind == "strategies":
        return {name: {"description": _first_line(cls),
                       "kind": "one-shot" if issubclass(cls, OneShotStrategy) else "multi-trial",
                       "defaults": defaults_of(cls)}
                for name, cls in ((n, STRATEGIES.get(n)) for n in STRATEGIES.names())}
    raise ConfigError(f"cannot list {kind!r} (try spaces or strategies)")


def _first_line(obj: Any) -> str:
    return (inspect.getdoc(obj) or "").splitlines()[0] if inspect.getdoc(obj) else ""


def prepare(settings: Mapping[str, Any]) -> tuple[SearchSpace, SampleStrategy, Any, Any]:
    """Space, strategy, evaluator and dataset of `settings`; every check happens here."""
    s = settings
    space = create_space(s["space"], s["space_args"])
    strategy = create_strategy(s["strategy"], space, s["strategy_args"], seed=s["seed"])
    data = load_dataset(s["dataset"], s["data_dir"], seed=s["seed"])
    evaluator = create_evaluator(s, space, data)
    return space, strategy, evaluator, data


def _build_kwargs(s: Mapping[str, Any]) -> dict[str, Any]:
    """The trial networks' build settings: the space's defaults, then --build-arg."""
    return {**BUILD_DEFAULTS.get(s["space"], {}), **s["build_args"]}


def create_evaluator(s: Mapping[str, Any], space: SearchSpace, data: Any) -> Any:
    from archsearch.runs import resolve_device

    device = str(resolve_device(s["device"]))
    build = _build_kwargs(s)
    if s["evaluator"] == "proxy":
        return EVALUATORS.get("proxy")(space, x=data.x_train, y=data.y_train,
                                       num_classes=data.num_classes, proxy=s["proxy"],
                                       batch_size=s["batch_size"], device=device,
                                       seed=s["seed"], build_kwargs=build)
    index = np.arange(len(data.y_train))
    train_idx, val_idx, _, _ = stratified_split(data.name, index, data.y_train.numpy(),
                                                seed=s["seed"], test_fraction=VAL_FRACTION)
    train_idx, val_idx = torch.from_numpy(train_idx), torch.from_numpy(val_idx)
    return EVALUATORS.get(s["evaluator"])(
        space, x_train=data.x_train[train_idx], y_train=data.y_train[train_idx],
        x_val=data.x_train[val_idx], y_val=data.y_train[val_idx],
        num_classes=data.num_classes, epochs=s["epochs"], batch_size=s["batch_size"],
        lr=s["lr"], device=device, seed=s["seed"], build_kwargs=build)


def constraints_of(s: Mapping[str, Any], space: SearchSpace,
                   data: Any) -> tuple[list[Constraint], ArchCost | None]:
    """--max-params / --max-macs / --max-latency-ms as constraints and the cost model that
    checks them; the cost model also supplies cost objectives before training (latency is
    measured only when it is constrained or optimised)."""
    limits = {"num_params": s.get("max_params"), "macs": s.get("max_macs"),
              "latency_ms": s.get("max_latency_ms")}
    constraints = [Constraint(metric, "<=", float(limit))
                   for metric, limit in limits.items() if limit is not None]
    for c in constraints:
        if not c.limit > 0:
            raise ConfigError(f"--max-{c.metric.replace('_', '-')} must be positive, "
                              f"got {c.limit:g}")
    reward_cost = s.get("reward_cost")
    cost_objectives = {o.metric for o in objectives_from(s)} & set(COST_METRICS)
    if not constraints and reward_cost is None and not cost_objectives:
        if s.get("latency_table") is not None:
            raise ConfigError("--latency-table predicts latency_ms: use it with "
                              "--max-latency-ms, --reward-cost latency_ms or a latency_ms "
                              "objective")
        return [], None
    from archsearch.runs import resolve_device

    build = {**_build_kwargs(s), "num_classes": data.num_classes,
             "in_channels": data.in_channels}
    timed = (limits["latency_ms"] is not None or reward_cost == "latency_ms"
             or "latency_ms" in cost_objectives)
    shape = tuple(data.x_train.shape[1:])
    table_path = s.get("latency_table")
    if table_path is not None:  # predicted latency from the user's table, not measured
        from archsearch.hardware import LatencyTable, TableLatencyCost

        base = ArchCost(space, shape, build_kwargs=build, latency=False)
        return constraints, TableLatencyCost(LatencyTable.load(table_path), space=space,
                                             build_kwargs=build, input_shape=shape, base=base)
    cost = ArchCost(space, shape, build_kwargs=build, latency=timed,
                    device=resolve_device(s["device"]))
    return constraints, cost


def budget_of(s: Mapping[str, Any]) -> Budget:
    return Budget(trials=s["trials"], seconds=s["time_limit"])


def run_multitrial(settings: Mapping[str, Any], out: Path, *, resume: bool = False,
                   overwrite: bool = False, progress: bool = True,
                   log: Log = print) -> SearchResult:
    """A journaled multi-trial search; with `resume`, `settings` come from `out`."""
    check_single_process("a multi-trial search",
                         "run it in one process and scale out with --workers N")
    s = dict(settings)
    budget = budget_of(s)
    check_parallel_settings(s)
    objectives = objectives_from(s)
    check_objectives(objectives, STRATEGIES.get(s["strategy"]))
    space, strategy, evaluator, data = prepare(s)
    constraints, cost = constraints_of(s, space, data)
    names = evaluator.metric_names() if hasattr(evaluator, "metric_names") else None
    if names is not None and cost is not None:
        names = (*names, *cost.metric_names())
    if s.get("reward_cost") is not None and s["reward_cost"] not in COST_METRICS:
        raise ConfigError(f"--reward-cost must be one of {', '.join(COST_METRICS)}, "
                          f"got {s['reward_cost']!r}")
    flag = "--objectives" if s.get("objectives") else "--objective"
    for objective in objectives:
        if names is not None and objective.metric not in names:
            raise ConfigError(f"{flag} {objective.metric}: the {s['evaluator']} evaluator "
                              f"reports {', '.join(names)}")
    # Workers start (or the Ray cluster is reached) before the run directory is made.
    with executor_for_run(s, evaluator, log) as executor:
        if not resume:
            out = prepare_run_dir(out, overwrite=overwrite)
            from archsearch.runs import run_meta

            atomic_write_json(out / "config.json", run_meta("search", s))
        log(f"search: {strategy!r} on {space!r}, evaluator {s['evaluator']} on "
            f"{data.describe()} -> {out}")
        if constraints:
            log(f"constraints: {', '.join(map(str, constraints))}")
        if len(objectives) > 1:
            log(f"objectives: {', '.join(map(str, objectives))} (Pareto front in pareto.json)")
        result = search(strategy, budget=budget, objective=objectives, run_dir=out,
                        resume=resume, progress=progress, constraints=constraints,
                        cost_model=cost, executor=executor,
                        # Spaces that know which archs compute the same function (NAS-Bench-
                        # 201) answer an equivalent arch from the journal, not by training it.
                        dedup_key=getattr(space, "canonical", None))
    log(summary(result, space, objectives))
    from archsearch.runs import draw_pictures

    draw_pictures(out, log)
    return result


def load_settings(run_dir: Path) -> dict[str, Any]:
    """The settings a multi-trial run was started with (its config.json)."""
    path = run_dir / "config.json"
    if not run_dir.is_dir():
        raise ConfigError(f"--resume {run_dir}: no such run directory")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        settings = doc["settings"]
        settings["strategy"]  # noqa: B018 (a DARTS run has no multi-trial settings)
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        raise ConfigError(f"--resume {run_dir}: no readable multi-trial config.json "
                          "(only multi-trial searches can be resumed)") from None
    return settings


def summary(result: SearchResult, space: SearchSpace,
            objectives: Objective | list[Objective]) -> str:
    failed = sum(t.state == "failed" for t in result.trials)
    infeasible = sum(t.state == "infeasible" for t in result.trials)
    rejected = f", {infeasible} rejected by the constraints" if infeasible else ""
    lines = [f"search done ({result.stopped}): {result.evaluations} trials, {failed} failed"
             f"{rejected}, {result.elapsed_seconds:.1f} s"]
    objectives = [objectives] if isinstance(objectives, Objective) else objectives
    objective = objectives[0]
    if result.best is None:
        lines.append("no trial completed")
    else:
        best = result.best
        lines.append(f"best: trial {best.number}, {objective.metric} = "
                     f"{best.metrics[objective.metric]:.4f}")
        lines.append(space.describe(best.arch))
    if len(objectives) > 1:
        lines.append(_front_summary(result, objectives))
    return "\n".join(lines)


def _front_summary(result: SearchResult, objectives: list[Objective],
                   show: int = 10) -> str:
    """The Pareto front, best first by the first objective, one trial per line."""
    front = sorted(result.front, key=lambda t: tuple(-x for x in t.score) + (t.number,))
    lines = [f"Pareto front: {len(front)} trials (pareto.json, pareto.png)"]
    for trial in front[:show]:
        values = ", ".join(f"{o.metric} = {trial.metrics[o.metric]:.4g}" for o in objectives)
        lines.append(f"  trial {trial.number}: {values}")
    if len(front) > show:
        lines.append(f"  ... {len(front) - show} more in pareto.json")
    return "\n".join(lines)
