"""Tabular evaluation: "train" an architecture by looking its results up in a benchmark table.

A search on a tabular benchmark such as NAS-Bench-201 (Dong & Yang, ICLR 2020,
arXiv:2001.00326) replaces training with a table look-up, so a whole search runs in
seconds and many seeds can be compared. The evaluator returns only what a search may see:
the validation accuracy, sizes, latency and a simulated training time. The test accuracy,
which decides how good the returned architecture is, comes from `test_accuracy` and is for
the final report only; a strategy never sees it. See `archsearch.benchmarks.nb201` for what
the numbers mean and for the simulated-time cost model.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from archsearch.benchmarks.nb201 import (
    NasBench201Table,
    check_dataset,
    check_fidelity,
    simulated_train_seconds,
)
from archsearch.errors import ConfigError
from archsearch.evaluators._base import TrialFailed
from archsearch.space import Arch


class TableEvaluator:
    """Score NAS-Bench-201 cells by table look-up.

    Args:
        space: the NAS-Bench-201 space (anything with `to_string(arch)` giving the
            benchmark's cell string).
        table: the loaded tables.
        dataset: "cifar10", "cifar100" or "imagenet16".
        fidelity: training epochs of the looked-up results, 200 or 12.
        device: a latency device of the table (e.g. "pixel3"); then `latency_ms` is
            returned too.
        seconds_per_epoch: a fixed simulated cost of one epoch for every cell; None (the
            default) charges each cell by its MACs (`simulated_train_seconds`).

    Raises:
        ConfigError: unknown dataset, fidelity or device, a non-positive
            `seconds_per_epoch`, or a space without `to_string`.

    Example:
        >>> space = NasBench201Space()  # doctest: +SKIP
        >>> table = NasBench201Table.load(find_nb201_dir())  # doctest: +SKIP
        >>> evaluator = TableEvaluator(space, table, fidelity=12)  # doctest: +SKIP
        >>> evaluator(space.from_string(table.string_of(6111)))["val_acc"]  # doctest: +SKIP
    """

    def __init__(self, space: Any, table: NasBench201Table, *, dataset: str = "cifar10",
                 fidelity: int = 200, device: str | None = None,
                 seconds_per_epoch: float | None = None) -> None:
        if not callable(getattr(space, "to_string", None)):
            raise ConfigError(f"the table evaluator needs the NAS-Bench-201 space (with "
                              f"to_string), not {space!r}")
        if seconds_per_epoch is not None and not (
                isinstance(seconds_per_epoch, int | float) and math.isfinite(seconds_per_epoch)
                and seconds_per_epoch > 0):
            raise ConfigError(f"seconds_per_epoch must be a positive number, got "
                              f"{seconds_per_epoch!r}")
        self.space, self.table = space, table
        self.dataset, self.fidelity = check_dataset(dataset), check_fidelity(fidelity)
        self.device = None if device is None else table.check_device(device)
        self.seconds_per_epoch = seconds_per_epoch
        if not table.has_heldout_val(self.dataset, self.fidelity):
            warnings.warn(f"the NAS-Bench-201 tables hold no {self.fidelity}-epoch validation "
                          f"accuracy for {self.dataset}: val_acc is the test accuracy, so the "
                          f"search sees the number it is scored on (fidelity 12 has a "
                          f"held-out one)", UserWarning, stacklevel=2)

    def __repr__(self) -> str:
        device = "" if self.device is None else f", device={self.device!r}"
        return (f"TableEvaluator(dataset={self.dataset!r}, fidelity={self.fidelity}{device}, "
                f"cells={len(self.table)})")

    def metric_names(self) -> tuple[str, ...]:
        """The keys of the metrics every call returns."""
        latency = ("latency_ms",) if self.device is not None else ()
        return ("val_acc", "num_params", "macs", *latency, "train_seconds")

    def __call__(self, arch: Arch) -> dict[str, float]:
        """Look `arch` up.

        Returns:
            `val_acc` (percent, as in the tables), `num_params`, `macs`, `latency_ms` (if
            a device was chosen) and `train_seconds` (simulated, see the class doc). Never
            a test accuracy.

        Raises:
            ArchError: `arch` is not a cell of the space.
            TrialFailed: the cell is missing from a partial table (a test fixture).
        """
        row = self._query(arch, self.fidelity)
        metrics = {"val_acc": row["val_acc"], "num_params": row["num_params"],
                   "macs": row["macs"]}
        if self.device is not None:
            metrics["latency_ms"] = row["latency_ms"][self.device]
        metrics["train_seconds"] = self.train_seconds(row["macs"])
        return metrics

    def train_seconds(self, macs: float) -> float:
        """Simulated seconds to train a cell of `macs` MACs at this evaluator's fidelity."""
        if self.seconds_per_epoch is not None:
            return self.fidelity * float(self.seconds_per_epoch)
        return simulated_train_seconds(macs, self.dataset, self.fidelity)

    def test_accuracy(self, arch: Arch, *, fidelity: int = 200) -> float:
        """The test accuracy (percent) of `arch` on this evaluator's dataset, for reporting
        the result of a search; never give it to a strategy.

        Args:
            fidelity: training epochs of the reported number. The default 200 is what the
                architecture is worth once fully trained, also after a search on the
                12-epoch numbers (NATS-Bench's protocol).
        """
        return float(self._query(arch, check_fidelity(fidelity))["test_acc"])

    def _query(self, arch: Arch, fidelity: int) -> dict[str, Any]:
        cell = self.space.to_string(arch)
        if cell not in self.table:
            raise TrialFailed(f"cell {cell} is not in the table ({len(self.table)} of "
                              f"15,625 cells)")
        return self.table.query(cell, dataset=self.dataset, fidelity=fidelity)
