"""The run directory of a multi-trial search: journal, strategy state, best arch, result.

`trials.jsonl` is append-only, one complete JSON record per line, fsynced; everything else
is written atomically. Used by the search loop (`archsearch._loop`), which owns the logic.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archsearch.errors import ConfigError
from archsearch.space import Arch
from archsearch.storage import JsonlLog, atomic_write_json
from archsearch.strategies._base import SampleStrategy

if TYPE_CHECKING:
    from archsearch._loop_state import SearchResult, Trial

JOURNAL = "trials.jsonl"
STRATEGY_STATE = "strategy.json"
BEST_ARCH = "best_arch.json"
RESULT = "result.json"


class _Journal:
    """trials.jsonl + strategy.json + best_arch.json in a run directory (or nowhere)."""

    def __init__(self, run_dir: str | Path | None, *, resume: bool) -> None:
        self.dir = None if run_dir is None else Path(run_dir)
        self.log = None if self.dir is None else JsonlLog(self.dir / JOURNAL)
        if self.dir is None:
            if resume:
                raise ConfigError("resume needs a run directory")
            return
        if not resume and self.log is not None and self.log.path.exists():
            raise ConfigError(f"{self.dir} already holds a search journal; pass --resume to "
                              "continue it or choose another directory")
        self.dir.mkdir(parents=True, exist_ok=True)

    def records(self) -> list[dict[str, Any]]:
        """The journal's records. A last line cut short by a crash mid-write (no newline at
        the end) is dropped from the file — that trial is simply run again; a malformed
        complete line is corruption and an error (`storage.read_jsonl`)."""
        return [] if self.log is None else self.log.read(repair=True)

    def snapshot(self) -> dict[str, Any] | None:
        path = None if self.dir is None else self.dir / STRATEGY_STATE
        if path is None or not path.exists():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ConfigError(f"{path} is corrupt; delete it to resume by replaying "
                              "the journal") from None

    def append(self, trial: Trial) -> None:
        if self.log is not None:
            self.log.append(trial.to_json())

    def save_state(self, strategy: SampleStrategy, records: int,
                   extra: Mapping[str, Any] | None = None) -> None:
        """The strategy's state right after its tell of journal record `records - 1`, with
        `extra` (the loop's ask count and the asks still in flight)."""
        if self.dir is not None:
            atomic_write_json(self.dir / STRATEGY_STATE,
                              {"records": records, **(extra or {}),
                               "state": strategy.state_dict()})

    def write_best(self, trial: Trial, describe: Callable[[Arch], str]) -> None:
        if self.dir is not None:
            doc = trial.arch.to_json(description=describe(trial.arch))
            doc.update({"trial": trial.number, "metrics": trial.metrics})
            atomic_write_json(self.dir / BEST_ARCH, doc)

    def write_result(self, result: SearchResult) -> None:
        if self.dir is None:
            return
        best = result.best
        atomic_write_json(self.dir / RESULT, {
            "stopped": result.stopped, "records": len(result.trials),
            "evaluations": result.evaluations,
            "failed": sum(t.state == "failed" for t in result.trials),
            "retried": sum(t.attempts > 1 for t in result.trials),
            "elapsed_seconds": round(result.elapsed_seconds, 3),
            "best": None if best is None else {"trial": best.number, "arch": dict(best.arch),
                                               "metrics": best.metrics, "score": best.score}})
