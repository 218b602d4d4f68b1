"""NAS-Bench-201 as tables: what training a cell would give, looked up instead of trained.

NAS-Bench-201 (Dong & Yang, ICLR 2020, arXiv:2001.00326) and its extension NATS-Bench
(Dong et al., TPAMI 2021, arXiv:2009.00437) trained all 15,625 cells of one space. The five
CSV files of `NB201_FILES` hold those results, one row per cell in the benchmark's index
order; `NasBench201Table.load` reads and checks them (no pickles, no torch).

What `val_acc` and `test_acc` are (top-1 accuracy in percent, seed means, as in the tables),
per dataset and fidelity (training epochs):

- cifar10, 200: `val_acc` = `valid_top1` (trained on 25k training images, scored on the
  other 25k); `test_acc` = `test_top1` (trained on all 50k, scored on the test set).
- cifar100 and imagenet16, 200: `test_acc` = NATS-Bench's 200-epoch test accuracy, and
  `val_acc` = the same number (the tables hold no held-out one).
- any dataset, 12: `val_acc` = `<dataset>-val`, `test_acc` = `<dataset>-test` of the
  12-epoch table (`imagenet-val`, `imagenet-test` for imagenet16).

On CIFAR-10 there is no test leak: a search sees `val_acc` only and the test accuracy is
for the final report. For CIFAR-100 and ImageNet16-120 at 200 epochs the tables give one
number, so `val_acc` is it; `has_heldout_val` is False there and `TableEvaluator` warns
that the search sees the number it is scored on (use fidelity 12 for a held-out signal).
The NATS-Bench file's own CIFAR-10 column is not used: it comes from other training runs
and differs from `test_top1` by up to 2.2 points; the `v1_1` file is the reference.

Sizes are those of the benchmark's reference network for the dataset (the classifier's
width differs): `num_params` and `macs` (multiply-adds of one input, conv and linear
layers, biases included) from `nb201_flops_params_computed.csv`. `latency_ms` is one
number per cell and device, measured by HELP (Lee et al., NeurIPS 2021, arXiv:2106.08630)
on 27 devices: GPUs `1080ti`, `2080ti`, `titan_rtx`, `titanx`, `titanxp` at batch 1, 32 and
256 (suffixes `_1`, `_32`, `_256`), server CPUs `gold_6226`, `gold_6240`, `silver_4114`,
`silver_4210r`, phones `essential_ph_1`, `pixel2`, `pixel3`, `samsung_a50`, `samsung_s7`,
a Raspberry Pi 4 `raspi4`, an `fpga` and the `eyeriss` accelerator (`table.devices`).
`proxy_naswot` is the NASWOT score (Mellor et al., ICML 2021, arXiv:2006.04647), NaN for
the 341 cells with no path from input to output.

Simulated training time (`simulated_train_seconds`), so that budgets in seconds mean
something: one epoch costs `macs × train_images / SIMULATED_MACS_PER_SECOND` seconds, i.e.
it is proportional to the cell's MACs and the dataset's training images (50,000 for the
CIFARs, 151,700 for ImageNet16-120). The throughput 1.75e11 forward MACs per second folds
in backward pass and data loading; it is our modelling assumption, calibrated so the
average CIFAR-10 cell (55.0 M MACs) trains in about 16 s per epoch: 52 min for the
200-epoch protocol, 3.1 min for the 12-epoch one (exactly 12/200 of it).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple, NoReturn

import numpy as np

from archsearch.benchmarks._csv import CsvTable, read_csv
from archsearch.errors import ArchError, ConfigError

NB201_FILES: dict[str, str] = {
    "cifar10": "nb201_cifar10_v1_1_valid_test_params.csv",
    "nats": "nb201_nats_tss_test_acc_200ep.csv",
    "epoch12": "nb201_12epoch_accs.csv",
    "counts": "nb201_flops_params_computed.csv",
    "latency": "nb201_latency_27devices_help.csv",
}
NB201_ENV_VAR = "ARCHSEARCH_NB201_DIR"
NB201_FALLBACK_DIR = Path("..") / "shared" / "data" / "nb201"
NUM_CELLS = 5**6  # 5 ops on each of the 6 edges
DATASETS = ("cifar10", "cifar100", "imagenet16")
FIDELITIES = (200, 12)
METRICS = ("val_acc", "test_acc", "num_params", "macs", "proxy_naswot")
TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000, "imagenet16": 151_700}
SIMULATED_MACS_PER_SECOND = 1.75e11

_DATASET_ALIASES = {"imagenet16-120": "imagenet16", "imagenet": "imagenet16",
                    "cifar-10": "cifar10", "cifar-100": "cifar100"}
# (dataset, epochs) -> (file key, val column, test column); the same column twice means the
# tables hold no held-out validation number for that setting.
_ACCURACY_COLUMNS = {
    ("cifar10", 200): ("cifar10", "valid_top1", "test_top1"),
    ("cifar100", 200): ("nats", "CIFAR100TestAccuracy200Epochs",
                        "CIFAR100TestAccuracy200Epochs"),
    ("imagenet16", 200): ("nats", "ImageNetTestAccuracy200Epochs",
                          "ImageNetTestAccuracy200Epochs"),
    ("cifar10", 12): ("epoch12", "cifar10-val", "cifar10-test"),
    ("cifar100", 12): ("epoch12", "cifar100-val", "cifar100-test"),
    ("imagenet16", 12): ("epoch12", "imagenet-val", "imagenet-test"),
}
# file key -> (index column or None: row order is the index, arch string column)
_KEY_COLUMNS = {"cifar10": ("arch", "cellstr"), "nats": (None, "ArchitectureString"),
                "epoch12": ("arch", "cellstr"), "counts": ("index", "arch_str"),
                "latency": ("index", "arch_str")}
_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
_OP = "(?:" + "|".join(_OPS) + ")"
_ARCH_RE = re.compile(rf"\|{_OP}~0\|\+\|{_OP}~0\|{_OP}~1\|\+\|{_OP}~0\|{_OP}~1\|{_OP}~2\|")


class BestCell(NamedTuple):
    """The best cell of the table for one metric: its index, arch string and value."""

    index: int
    arch_str: str
    value: float


def simulated_train_seconds(macs: float, dataset: str, epochs: int) -> float:
    """Simulated seconds to train a cell of `macs` MACs for `epochs` epochs (see module doc)."""
    return epochs * macs * TRAIN_IMAGES[dataset] / SIMULATED_MACS_PER_SECOND


def find_nb201_dir(explicit: str | os.PathLike[str] | None = None, *,
                   env: Mapping[str, str] = os.environ) -> Path:
    """The directory holding the five NAS-Bench-201 CSV files.

    Looked for, in order: `explicit`, `env["ARCHSEARCH_NB201_DIR"]`, then
    `../shared/data/nb201` relative to the current directory. A path that is given (the
    first two) must hold the files; the fallback is skipped when it does not.

    Raises:
        ConfigError: the files are not where a given path says, or nowhere; the message
            names the files needed and where they may go.
    """
    given = (("the given directory", explicit), (NB201_ENV_VAR, env.get(NB201_ENV_VAR)))
    for origin, value in given:
        if value is not None and str(value) != "":
            path = Path(value).expanduser()
            missing = _missing_files(path)
            if missing:
                raise ConfigError(f"NAS-Bench-201 tables not found: {origin} {str(path)!r} lacks "
                                  f"{', '.join(missing)}")
            return path
    fallback = (Path.cwd() / NB201_FALLBACK_DIR).resolve()
    if not _missing_files(fallback):
        return fallback
    raise ConfigError(
        f"NAS-Bench-201 tables not found: need the CSV files {', '.join(NB201_FILES.values())} "
        f"in one directory; put them in {NB201_FALLBACK_DIR} (relative to the current "
        f"directory: {fallback}) or set {NB201_ENV_VAR} to their directory")


def _missing_files(path: Path) -> list[str]:
    return [name for name in NB201_FILES.values() if not (path / name).is_file()]


def check_dataset(dataset: str) -> str:
    """The canonical name of `dataset` ("imagenet16-120" → "imagenet16"); ConfigError if
    unknown, suggesting the closest name."""
    name = _DATASET_ALIASES.get(str(dataset).lower(), str(dataset).lower())
    if name in DATASETS:
        return name
    return _unknown("dataset", dataset, DATASETS)


def check_fidelity(fidelity: int | str) -> int:
    """`fidelity` (training epochs, an int or a string of digits) as an int; ConfigError
    unless the tables hold it."""
    epochs = None
    if isinstance(fidelity, int | np.integer) and not isinstance(fidelity, bool):
        epochs = int(fidelity)
    elif isinstance(fidelity, str) and fidelity.strip().isdigit():
        epochs = int(fidelity)
    if epochs in FIDELITIES:
        return epochs
    closest = min(FIDELITIES, key=lambda f: abs(f - epochs)) if epochs is not None else 200
    raise ConfigError(f"unknown fidelity {fidelity!r}; did you mean {closest}? (the tables "
                      f"hold {' and '.join(map(str, FIDELITIES))} training epochs)")


def _unknown(kind: str, name: object, known: tuple[str, ...]) -> NoReturn:
    close = difflib.get_close_matches(str(name).lower(), known, n=1, cutoff=0.4)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"unknown {kind} {name!r}{hint} (known: {', '.join(known)})")


class NasBench201Table:
    """The NAS-Bench-201 tables, indexed by benchmark index and by arch string.

    Build it with `NasBench201Table.load(directory)`. Percentages and units are described
    in the module docstring.

    Example:
        >>> table = NasBench201Table.load(find_nb201_dir())  # doctest: +SKIP
        >>> table.query(6111)["test_acc"]  # doctest: +SKIP
        94.37333333333333
    """

    def __init__(self, data_dir: Path, indices: np.ndarray, strings: list[str],
                 unique: list[str], columns: dict[str, np.ndarray],
                 latency_ms: dict[str, np.ndarray]) -> None:
        self.data_dir = data_dir
        self._indices, self._strings, self._unique = indices, strings, unique
        self._columns, self._latency_ms = columns, latency_ms
        self._row_of_string = {s: row for row, s in enumerate(strings)}
        self._row_of_index = {int(i): row for row, i in enumerate(indices)}

    @classmethod
    def load(cls, data_dir: str | os.PathLike[str], *,
             expect_rows: int | None = NUM_CELLS) -> NasBench201Table:
        """Read and check the five CSV files of `data_dir`.

        Args:
            data_dir: the directory holding the files of `NB201_FILES`.
            expect_rows: rows every file must have; the default is the whole benchmark.
                None accepts a partial table (test fixtures): any number of rows, the same
                in every file, with increasing indices.

        Raises:
            ConfigError: a file is missing, lacks a column, has a malformed number, a
                wrong row count, or disagrees with the others on which cell a row holds
                (the message names the file and the line).
        """
        data_dir = Path(data_dir)
        files = {key: read_csv(data_dir / name, _required_columns(key))
                 for key, name in NB201_FILES.items()}
        first = files["cifar10"]
        expected = len(first) if expect_rows is None else expect_rows
        for table in files.values():
            if len(table) != expected:
                raise table.error(None, f"{len(table)} rows, expected {expected} (one per "
                                  "cell, as in the other files); is the file cut short?")
        index_name, arch_name = _KEY_COLUMNS["cifar10"]
        indices = first.row_indices(index_name, num_rows=NUM_CELLS,
                                    complete=expected == NUM_CELLS)
        strings = first.row_keys(arch_name, _ARCH_RE, "a NAS-Bench-201 arch string")
        for key, table in files.items():  # row i of every file must be the same cell
            if table is first:
                continue
            index_name, arch_name = _KEY_COLUMNS[key]
            if index_name is not None:
                table.check_same(index_name, indices, first.path.name)
            table.check_same(arch_name, strings, first.path.name)
        columns = _numeric_columns(files)
        latency = files["latency"]
        devices = [name for name in latency.header if name not in _KEY_COLUMNS["latency"]]
        latency_ms = {device: latency.numbers(device) for device in devices}
        return cls(data_dir, indices, strings, files["nats"].strings("UniqueString"),
                   columns, latency_ms)

    def __len__(self) -> int:
        return len(self._strings)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            return key in self._row_of_string
        return isinstance(key, int | np.integer) and int(key) in self._row_of_index

    def __repr__(self) -> str:
        return f"NasBench201Table({str(self.data_dir)!r}, {len(self)} cells)"

    @property
    def datasets(self) -> tuple[str, ...]:
        return DATASETS

    @property
    def fidelities(self) -> tuple[int, ...]:
        return FIDELITIES

    @property
    def devices(self) -> tuple[str, ...]:
        """Names of the devices with a measured latency."""
        return tuple(self._latency_ms)

    @property
    def is_complete(self) -> bool:
        """Whether the table holds every cell of the benchmark (False for fixtures)."""
        return len(self) == NUM_CELLS

    @property
    def indices(self) -> np.ndarray:
        """The benchmark index of each row (0, 1, …, 15624 for the whole benchmark)."""
        return self._indices.copy()

    def index_of(self, arch_str: str) -> int:
        """The benchmark index of the cell written `arch_str`."""
        return int(self._indices[self._row(arch_str)])

    def string_of(self, index: int) -> str:
        """The arch string of the cell with benchmark index `index`."""
        return self._strings[self._row(index)]

    def unique_string(self, key: str | int) -> str:
        """NATS-Bench's `UniqueString`: equal for cells that compute the same function."""
        return self._unique[self._row(key)]

    def check_device(self, device: str) -> str:
        """`device` if the latency table has it; ConfigError suggesting the closest name."""
        if device in self._latency_ms:
            return device
        return _unknown("latency device", device, self.devices)

    def has_heldout_val(self, dataset: str, fidelity: int) -> bool:
        """False where `val_acc` is the test accuracy (CIFAR-100 / ImageNet16 at 200)."""
        _, val, test = _ACCURACY_COLUMNS[check_dataset(dataset), check_fidelity(fidelity)]
        return val != test

    def query(self, key: str | int, *, dataset: str = "cifar10",
              fidelity: int = 200) -> dict[str, object]:
        """Everything the tables say about one cell, for `dataset` trained `fidelity` epochs.

        Args:
            key: the cell's arch string or benchmark index.

        Returns:
            `index`, `arch_str`, `val_acc`, `test_acc` (percent), `num_params`, `macs`
            (ints), `latency_ms` ({device: ms}), `proxy_naswot` (NaN if undefined).

        Raises:
            ArchError: `key` is malformed or not in the table.
            ConfigError: unknown dataset or fidelity.
        """
        dataset, fidelity = check_dataset(dataset), check_fidelity(fidelity)
        row = self._row(key)
        return {
            "index": int(self._indices[row]), "arch_str": self._strings[row],
            **{m: self._value(m, row, dataset, fidelity) for m in METRICS},
            "latency_ms": {d: float(ms[row]) for d, ms in self._latency_ms.items()},
        }

    def values(self, metric: str, *, dataset: str = "cifar10", fidelity: int = 200,
               device: str | None = None) -> np.ndarray:
        """One metric of every row, in row order (a copy); `metric` is one of `METRICS` or
        "latency_ms" (then `device` names the device)."""
        if metric == "latency_ms":
            if device is None:
                raise ConfigError("latency_ms needs a device (one of table.devices)")
            return self._latency_ms[self.check_device(device)].copy()
        if metric not in METRICS:
            _unknown("metric", metric, (*METRICS, "latency_ms"))
        dataset, fidelity = check_dataset(dataset), check_fidelity(fidelity)
        return self._columns[_column_key(metric, dataset, fidelity)].copy()

    def best(self, dataset: str = "cifar10", fidelity: int = 200,
             metric: str = "test_acc") -> BestCell:
        """The cell with the highest `metric` (ties: lowest index; NaN never wins)."""
        values = self.values(metric, dataset=dataset, fidelity=fidelity)
        row = int(np.nanargmax(values))
        return BestCell(int(self._indices[row]), self._strings[row], float(values[row]))

    def _value(self, metric: str, row: int, dataset: str, fidelity: int) -> float | int:
        value = float(self._columns[_column_key(metric, dataset, fidelity)][row])
        return round(value) if metric in ("num_params", "macs") else value

    def _row(self, key: str | int) -> int:
        if isinstance(key, str):
            if key in self._row_of_string:
                return self._row_of_string[key]
            if not _ARCH_RE.fullmatch(key):
                raise ArchError(f"{key!r} is not a NAS-Bench-201 arch string (expected "
                                f"|op~0|+|op~0|op~1|+|op~0|op~1|op~2| with ops {', '.join(_OPS)})")
            raise ArchError(f"cell {key!r} is not in this table ({len(self)} cells)")
        if isinstance(key, int | np.integer) and not isinstance(key, bool):
            if int(key) in self._row_of_index:
                return self._row_of_index[int(key)]
            raise ArchError(f"index {key} is not in this table (NAS-Bench-201 indices run "
                            f"0..{NUM_CELLS - 1}; this table has {len(self)} cells)")
        raise ArchError(f"a cell is an arch string or an index, not {type(key).__name__}")


def _column_key(metric: str, dataset: str, fidelity: int) -> str:
    """Where `_numeric_columns` keeps `metric`: accuracies per (dataset, epochs), sizes per
    dataset, the proxy once."""
    if metric in ("val_acc", "test_acc"):
        return f"{metric}/{dataset}/{fidelity}"
    if metric in ("num_params", "macs"):
        return f"{metric}/{dataset}"
    return metric


def _required_columns(key: str) -> list[str]:
    index, arch = _KEY_COLUMNS[key]
    needed = [index, arch] if index else [arch]
    for file_key, val, test in _ACCURACY_COLUMNS.values():
        if file_key == key:
            needed += [val] if val == test else [val, test]
    if key == "cifar10":
        needed.append("score")
    if key == "nats":
        needed.append("UniqueString")
    if key == "counts":
        needed += [f"{d}_{what}" for d in DATASETS for what in ("flops_M", "params_MB")]
    return needed


def _numeric_columns(files: dict[str, CsvTable]) -> dict[str, np.ndarray]:
    columns = {"proxy_naswot": files["cifar10"].numbers("score", allow_missing=True)}
    for (dataset, epochs), (key, val, test) in _ACCURACY_COLUMNS.items():
        columns[f"val_acc/{dataset}/{epochs}"] = files[key].numbers(val)
        columns[f"test_acc/{dataset}/{epochs}"] = files[key].numbers(test)
    for dataset in DATASETS:
        # The file stores millions ("flops_M", "params_MB"); we keep plain counts.
        columns[f"macs/{dataset}"] = files["counts"].numbers(f"{dataset}_flops_M") * 1e6
        columns[f"num_params/{dataset}"] = files["counts"].numbers(f"{dataset}_params_MB") * 1e6
    return columns

