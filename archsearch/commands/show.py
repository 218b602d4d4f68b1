"""`archsearch show RUN_DIR [--json]`: a run's summary (issue 6).

Kind of run, space, strategy, budget used, the best architecture rendered for people (a
DARTS cell node by node, as in Fig. 1 of Liu et al., arXiv:1806.09055; other spaces by
their `describe`), its metrics, and the run's files. Reads DARTS searches (with or without
retrain/), training runs and multi-trial searches, finished or still running (no
result.json or arch.json yet). A malformed file ends with a one-line error (exit 2).
"""

from __future__ import annotations

import argparse
import json
import math
import textwrap
from pathlib import Path
from typing import Any

from archsearch.errors import ConfigError

WIDTH = 100
KEY_METRICS = ("val_acc", "val_accuracy", "test_acc", "test_accuracy", "num_params", "macs",
               "latency_ms")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("show", help="summary of a run directory: space, strategy, "
                              "budget used, best architecture, metrics, files")
    p.add_argument("run_dir", metavar="RUN_DIR", type=Path)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(run=handler)


def handler(args: argparse.Namespace) -> int:
    summary = summarize(args.run_dir)
    print(json.dumps(summary, indent=2) if args.json else render(summary))
    return 0


def summarize(run_dir: Path) -> dict[str, Any]:
    """The summary of the run in `run_dir` as plain JSON data."""
    from archsearch.plots._rundir import DARTS, KIND_NAMES, MULTITRIAL, list_files, open_run

    run = open_run(run_dir)
    try:
        if run.kind == DARTS:
            body = _darts(run)
        elif run.kind == MULTITRIAL:
            body = _multitrial(run)
        else:
            body = _train(run)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        # Valid JSON of the wrong shape: say so in one line rather than with a traceback.
        raise ConfigError(f"{run.path}: a run file is malformed ({type(exc).__name__}: "
                          f"{exc})") from None
    files = [{"path": p, "bytes": n} for p, n in list_files(run.path)]
    return {"run_dir": str(run.path), "kind": run.kind, "kind_name": KIND_NAMES[run.kind],
            **body, "files": files}


# --- the three kinds ------------------------------------------------------------------------
def _darts(run: Any) -> dict[str, Any]:
    s = run.settings
    records = run.jsonl("log.jsonl")
    arch = run.arch("arch.json")
    best = None
    if arch is not None:
        best = {"source": "arch.json", "choices": dict(arch), "text": _arch_text(arch, run),
                "metrics": {}}
    elif records and isinstance(records[-1].get("genotype"), str):
        best = {"source": f"log.jsonl (epoch {records[-1].get('epoch', len(records))})",
                "choices": None, "text": records[-1]["genotype"], "metrics": {}}
    if records and best is not None:
        last = records[-1]
        best["metrics"] = {f"supernet_{k}": last[k] for k in ("val_accuracy", "train_accuracy")
                           if isinstance(last.get(k), int | float)}
    retrain = run.path / "retrain"
    if best is not None and (retrain / "metrics.json").is_file():
        from archsearch.plots._rundir import read_json

        metrics = read_json(retrain / "metrics.json")
        best["metrics"].update({f"retrain_{k}": metrics[k] for k in
                                ("test_accuracy", "num_params", "epochs") if k in metrics})
    seconds = sum(float(r.get("seconds", 0.0)) for r in records)
    strategy = (f"DARTS, {s.get('order', '?')} order, {s.get('epochs', '?')} epochs, "
                f"C={s.get('channels', '?')}, {s.get('layers', '?')} cells, batch "
                f"{s.get('batch_size', '?')}, seed {s.get('seed', '?')}")
    if s.get("cost_weight"):
        strategy += f", cost weight {s['cost_weight']}"
    return {"status": "finished" if arch is not None else
            "in progress or interrupted (no arch.json yet)",
            "dataset": s.get("dataset"),
            "space": {"name": "darts", "args": {"nodes": s.get("nodes"), "ops": s.get("ops")}},
            "strategy": strategy,
            "budget": {"epochs_done": len(records), "epochs": s.get("epochs"),
                       "elapsed_seconds": round(seconds, 3)},
            "best": best}


def _multitrial(run: Any) -> dict[str, Any]:
    s = run.settings
    records = run.jsonl("trials.jsonl")
    result = run.json("result.json")
    states = [r.get("state") for r in records]
    elapsed = max((float(r.get("elapsed_seconds") or 0.0) for r in records), default=0.0)
    if isinstance(result, dict) and isinstance(result.get("elapsed_seconds"), int | float):
        elapsed = float(result["elapsed_seconds"])
    budget = {"evaluated": states.count("complete") + states.count("failed"),
              "trials": s.get("trials"), "time_limit_seconds": s.get("time_limit"),
              "complete": states.count("complete"), "failed": states.count("failed"),
              "infeasible": states.count("infeasible"), "repeats": states.count("cached"),
              "elapsed_seconds": round(elapsed, 3)}
    strategy = f"{s.get('strategy', '?')}{_args(s.get('strategy_args'))}, evaluator " \
               f"{s.get('evaluator', '?')}"
    if s.get("evaluator") == "proxy":
        strategy += f" ({s.get('proxy')})"
    objectives = s.get("objectives") or []
    if len(objectives) > 1:
        strategy += f", objectives {', '.join(f'{m}:{d}' for m, d in objectives)}"
    else:
        strategy += f", {s.get('direction', 'max')}imise {s.get('objective', '?')}"
    strategy += f", seed {s.get('seed', '?')}"
    if s.get("reward_cost"):
        strategy += (f", MnasNet reward on {s['reward_cost']} (target {s.get('reward_target')}"
                     f", w={s.get('reward_weight')})")
    status = (f"finished ({result.get('stopped')})" if isinstance(result, dict)
              else "in progress or interrupted (no result.json yet)")
    return {"status": status, "dataset": s.get("dataset"), "objective": s.get("objective"),
            "space": {"name": s.get("space"), "args": s.get("space_args") or {}},
            "strategy": strategy, "budget": budget, "best": _best_trial(run, records),
            "pareto": _pareto(run)}


def _best_trial(run: Any, records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The best complete trial by the (first) objective in its direction, or by the score
    under a MnasNet reward; else best_arch.json (a journal without complete trials)."""
    key = _trial_key(run.settings)
    complete = [(k, r) for r in records if r.get("state") == "complete"
                for k in [key(r)] if k is not None]
    run.arch("best_arch.json")  # a malformed best_arch.json is an error, even if unused
    doc = run.json("best_arch.json")
    if complete:
        best = max(complete, key=lambda pair: pair[0])[1]  # the first of equals, as the loop
        trial, metrics, choices = best.get("trial"), best.get("metrics") or {}, best["arch"]
    elif doc is not None:
        trial, metrics, choices = doc.get("trial"), doc.get("metrics") or {}, doc["choices"]
    else:
        return None
    source = f"trial {trial}"
    if len(run.settings.get("objectives") or []) > 1:
        source += f" (best {run.settings.get('objective')}; the front is in pareto.json)"
    return {"source": source, "trial": trial, "choices": choices,
            "text": _choices_text(run, choices, doc), "metrics": metrics}


def _trial_key(s: dict[str, Any]) -> Any:
    """record -> a number to maximise (None when the record has none)."""
    metric, sign = s.get("objective"), -1.0 if s.get("direction") == "min" else 1.0
    by_metric = isinstance(metric, str) and not s.get("reward_cost")

    def key(record: dict[str, Any]) -> float | None:
        metrics = record.get("metrics") or {}
        value = metrics.get(metric) if by_metric else record.get("score")
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not math.isfinite(value):
            return None
        return sign * value if by_metric else value

    return key


def _pareto(run: Any) -> dict[str, Any] | None:
    """The size and objectives of the Pareto front in pareto.json, if there is one."""
    doc = run.json("pareto.json")
    if doc is None:
        return None
    objectives = [f"{o['metric']}:{o['direction']}" for o in doc.get("objectives", [])]
    return {"trials": [r.get("trial") for r in doc.get("front", [])],
            "objectives": objectives}


def _train(run: Any) -> dict[str, Any]:
    s = run.settings
    records = run.jsonl("log.jsonl")
    metrics = run.json("metrics.json")
    arch = run.trained_arch()
    best = None
    if arch is not None:
        best = {"source": "model.pt", "choices": dict(arch), "text": _arch_text(arch, run),
                "metrics": {}}
    if isinstance(metrics, dict):
        best = best or {"source": "metrics.json", "choices": None, "text": "", "metrics": {}}
        best["metrics"] = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
    return {"status": "finished" if isinstance(metrics, dict) else
            "in progress or interrupted (no metrics.json yet)",
            "dataset": s.get("dataset"),
            "space": {"name": None if arch is None else arch.space,
                      "args": {} if arch is None else arch.space_args},
            "strategy": f"training a fixed architecture: {s.get('epochs', '?')} epochs, lr "
                        f"{s.get('lr', '?')}, C={s.get('channels', '?')}, "
                        f"{s.get('layers', '?')} cells, seed {s.get('seed', '?')}",
            "budget": {"epochs_done": len(records), "epochs": s.get("epochs"),
                       "elapsed_seconds": None if not isinstance(metrics, dict)
                       else metrics.get("seconds")},
            "best": best}


# --- architectures as text ----------------------------------------------------------------
def _choices_text(run: Any, choices: Any, doc: Any) -> str:
    """A journal record's arch, rendered by its space (rebuilt from config.json)."""
    from archsearch.errors import ArchsearchError
    from archsearch.multitrial import create_space

    s = run.settings
    try:
        space = create_space(s["space"], s.get("space_args") or {})
        return _space_text(space, space.arch(choices))
    except (ArchsearchError, KeyError):
        if isinstance(doc, dict) and isinstance(doc.get("description"), str):
            return doc["description"]
        raise ConfigError(f"{run.path}: the best trial's architecture does not fit the "
                          "space in config.json") from None


def _arch_text(arch: Any, run: Any) -> str:
    from archsearch.plots._rundir import space_for

    return _space_text(space_for(arch, source=str(run.path)), arch)


def _space_text(space: Any, arch: Any) -> str:
    if space.name == "darts":
        return darts_text(space.to_genotype(arch))
    if space.name == "nb201":
        return nb201_text(arch)
    out = []
    for line in space.describe(arch).splitlines():
        head, sep, rest = line.partition(": ")
        if len(line) > WIDTH - 4 and sep and "; " in rest:  # NASNet: one block a line
            out.append(f"{head}:")
            out += [f"    {part}" for part in rest.split("; ")]
        else:
            out.append(textwrap.fill(line, WIDTH - 4, subsequent_indent="    ",
                                     break_on_hyphens=False))
    return "\n".join(out)


def darts_text(genotype: Any) -> str:
    """A DARTS genotype node by node, e.g. `node 0 = sep_conv_3x3(c_{k-2}) + ...`."""
    from archsearch.plots._common import darts_node_name

    def name(j: int) -> str:
        return darts_node_name(j, math=False) if j < 2 else f"node {j - 2}"

    lines = []
    for title, pairs, concat in (("normal cell", genotype.normal, genotype.normal_concat),
                                 ("reduction cell", genotype.reduce, genotype.reduce_concat)):
        lines.append(f"{title}:")
        for k in range(0, len(pairs), 2):
            terms = " + ".join(f"{op}({name(j)})" for op, j in pairs[k:k + 2])
            lines.append(f"  node {k // 2} = {terms}")
        lines.append(f"  c_{{k}} = concat({', '.join(name(i) for i in concat)})")
    return "\n".join(lines)


def nb201_text(arch: Any) -> str:
    """The benchmark's string and each node as a sum of its (non-none) edges."""
    from archsearch.spaces.nasbench201 import NUM_NODES, to_string

    lines = [to_string(arch)]
    for i in range(1, NUM_NODES):
        terms = [f"{arch[f'n{i}.e{j}']}(node {j})" for j in range(i)
                 if arch[f"n{i}.e{j}"] != "none"]
        lines.append(f"  node {i} = {' + '.join(terms) or 'zero'}")
    return "\n".join(lines)


# --- rendering ------------------------------------------------------------------------------
def render(summary: dict[str, Any]) -> str:
    """The summary as text for people."""
    space = summary["space"]
    lines = [f"run:       {summary['run_dir']} ({summary['kind_name']}, {summary['status']})"]
    if space.get("name"):
        lines.append(f"space:     {space['name']}{_args(space.get('args'))}")
    lines.append(f"strategy:  {summary['strategy']}")
    if summary.get("dataset"):
        lines.append(f"dataset:   {summary['dataset']}")
    lines.append(f"budget:    {_budget_text(summary['kind'], summary['budget'])}")
    best = summary.get("best")
    if best is None:
        lines.append("best:      none yet (no trial completed)")
    else:
        lines.append(f"best:      from {best['source']}")
        lines += [f"  {line}" for line in best["text"].splitlines()]
        if best["metrics"]:
            lines.append(f"metrics:   {_metrics_text(best['metrics'], summary.get('objective'))}")
    pareto = summary.get("pareto")
    if pareto:
        lines.append(f"pareto:    {len(pareto['trials'])} trials on the front of "
                     f"{', '.join(pareto['objectives'])} (pareto.json)")
    lines.append("files:")
    lines += [f"  {f['path']:<28} {_size(f['bytes']):>10}" for f in summary["files"]]
    return "\n".join(lines)


def _budget_text(kind: str, b: dict[str, Any]) -> str:
    seconds = b.get("elapsed_seconds")
    time = "" if seconds is None else f", {seconds:.1f} s"
    if kind != "multitrial":
        return f"{b['epochs_done']} of {b.get('epochs') or '?'} epochs{time}"
    limits = [f"{b['trials']} trials" if b.get("trials") else None,
              f"{b['time_limit_seconds']:g} s" if b.get("time_limit_seconds") else None]
    of = " and ".join(x for x in limits if x)
    return (f"{b['evaluated']} trials evaluated{f' (budget {of})' if of else ''}: "
            f"{b['complete']} complete, {b['failed']} failed, {b['infeasible']} infeasible, "
            f"{b['repeats']} repeats{time}")


def _metrics_text(metrics: dict[str, Any], objective: str | None = None) -> str:
    """The objective first, then accuracies and costs, then the rest by name."""
    def rank(key: str) -> tuple[int, str]:
        if key == objective:
            return 0, key
        return (1 if key in KEY_METRICS or key.split("_", 1)[-1] in KEY_METRICS else 2), key

    return ", ".join(f"{k} {_number(metrics[k])}" for k in sorted(metrics, key=rank))


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if abs(value) < 1e9 and (isinstance(value, int) or float(value).is_integer()):
        return f"{int(value):,}"
    return f"{value:.4g}"


def _args(args: Any) -> str:
    if not args:
        return ""
    if isinstance(args, dict):
        return " (" + ", ".join(f"{k}={_short(v)}" for k, v in args.items()) + ")"
    return f" ({args})"


def _short(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def _size(n: float) -> str:
    if n < 1024:
        return f"{int(n)} B"
    n /= 1024
    return f"{n:.1f} KiB" if n < 1024 else f"{n / 1024:.1f} MiB"
