"""Strict reading of the benchmark's CSV tables: every problem names the file and the line.

Tabular benchmarks ship as plain CSV files that users download and move around, so a
truncated copy, a renamed column or a stray text cell is a user error, not a bug: each one
raises `ConfigError` with the file, the (1-based) line and what was expected there.
Reading uses the standard `csv` module; numbers are converted a column at a time with numpy
(fast), and only when a column fails is it scanned again to find the offending line.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from archsearch.errors import ConfigError

# The body's first row is line 2 of the file (line 1 is the header).
_FIRST_BODY_LINE = 2


class CsvTable:
    """The header and the body rows (as strings) of one CSV file, checked for shape.

    Args:
        path: the file, named in every error message.
        header: the column names of line 1.
        rows: the body rows; each has exactly `len(header)` fields.
    """

    def __init__(self, path: Path, header: list[str], rows: list[list[str]]) -> None:
        self.path, self.header, self.rows = path, header, rows
        self._position = {name: i for i, name in enumerate(header)}

    def __len__(self) -> int:
        return len(self.rows)

    def line_of(self, row: int) -> int:
        """The 1-based line of the file that holds body row `row`."""
        return row + _FIRST_BODY_LINE

    def error(self, row: int | None, message: str) -> ConfigError:
        """A ConfigError that names this file and, if given, the line of body row `row`."""
        where = f"{self.path}" if row is None else f"{self.path}, line {self.line_of(row)}"
        return ConfigError(f"{where}: {message}")

    def strings(self, name: str) -> list[str]:
        """Column `name` as it is written in the file."""
        position = self._position[name]
        return [row[position] for row in self.rows]

    def numbers(self, name: str, *, allow_missing: bool = False) -> np.ndarray:
        """Column `name` as float64; every value must be a finite number.

        Args:
            name: the column.
            allow_missing: an empty cell or NaN is allowed and becomes NaN (columns where the
                source leaves some cells undefined, e.g. a score with no value).

        Raises:
            ConfigError: a value is not a number (or not finite), naming file and line.
        """
        column = self.strings(name)
        if allow_missing:
            column = [value if value.strip() else "nan" for value in column]
        try:
            values = np.asarray(column, dtype=np.float64)
        except ValueError:
            values = None
        if values is not None:
            finite = np.isfinite(values) | (np.isnan(values) if allow_missing else False)
            if finite.all():
                return values
        raise self._first_bad_number(name, column, allow_missing)

    def integers(self, name: str) -> np.ndarray:
        """Column `name` as int64; every value must be a whole number written as one."""
        column = self.strings(name)
        for row, value in enumerate(column):
            if not value.strip().lstrip("-").isdigit():
                raise self.error(row, f"column {name!r}: {value!r} is not an integer")
        return np.asarray(column, dtype=np.int64)

    def row_indices(self, name: str, *, num_rows: int, complete: bool) -> np.ndarray:
        """Column `name` of row indices: 0, 1, 2, … if `complete`, else any increasing
        indices in [0, num_rows) (a table with some rows left out)."""
        indices = self.integers(name)
        if complete:
            bad = indices != np.arange(len(indices))
        else:
            bad = (np.diff(indices, prepend=-1) <= 0) | (indices < 0) | (indices >= num_rows)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise self.error(row, f"column {name!r}: index {indices[row]} out of order (rows "
                             f"must list increasing indices in 0..{num_rows - 1})")
        return indices

    def row_keys(self, name: str, pattern: re.Pattern[str], what: str) -> list[str]:
        """Column `name` of keys that each match `pattern` (described as `what`) and
        appear once."""
        keys = self.strings(name)
        seen: set[str] = set()
        for row, key in enumerate(keys):
            if not pattern.fullmatch(key):
                raise self.error(row, f"column {name!r}: {key!r} is not {what}")
            if key in seen:
                raise self.error(row, f"column {name!r}: {key!r} appears twice")
            seen.add(key)
        return keys

    def check_same(self, name: str, expected: np.ndarray | Sequence[str], reference: str) -> None:
        """Column `name` must equal `expected` (integers if it is an array), the same column
        of the file named `reference`; the first difference is an error."""
        values: Sequence[object] = (self.integers(name).tolist()
                                    if isinstance(expected, np.ndarray) else self.strings(name))
        wanted = expected.tolist() if isinstance(expected, np.ndarray) else expected
        for row, (value, want) in enumerate(zip(values, wanted, strict=True)):
            if value != want:
                raise self.error(row, f"column {name!r}: {value!r}, but {reference} has "
                                 f"{want!r} on this row (the files must list the same cells "
                                 "in the same order)")

    def _first_bad_number(self, name: str, column: Sequence[str],
                          allow_missing: bool) -> ConfigError:
        for row, value in enumerate(column):
            try:
                number = float(value)
            except ValueError:
                return self.error(row, f"column {name!r}: {value!r} is not a number")
            if not math.isfinite(number) and not (allow_missing and math.isnan(number)):
                return self.error(row, f"column {name!r}: {value!r} is not a finite number")
        raise AssertionError("a column failed to convert but every value is a number")


def read_csv(path: Path, required: Sequence[str]) -> CsvTable:
    """Read `path`, checking that it has the `required` columns and a full row on every line.

    Args:
        path: a CSV file whose first line is the header.
        required: column names that must be present (in any order; others are kept).

    Raises:
        ConfigError: the file is missing or unreadable, empty, lacks a required column,
            repeats a column, or a line has the wrong number of fields (e.g. a file cut
            short in the middle of a line).
    """
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            lines = list(csv.reader(handle))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ConfigError(f"{path}: cannot read the file ({error})") from None
    if not lines:
        raise ConfigError(f"{path}: the file is empty (expected a header line)")
    while len(lines) > 1 and not lines[-1]:  # blank lines at the end are not rows
        lines.pop()
    header, body = [name.strip() for name in lines[0]], lines[1:]
    _check_header(path, header, required)
    for row, fields in enumerate(body):
        if len(fields) != len(header):
            line = row + _FIRST_BODY_LINE
            raise ConfigError(f"{path}, line {line}: {len(fields)} fields, expected "
                              f"{len(header)} (one per column of the header; is the file "
                              f"cut short?)")
    return CsvTable(path, header, body)


def _check_header(path: Path, header: list[str], required: Sequence[str]) -> None:
    missing = [name for name in required if name not in header]
    if missing:
        raise ConfigError(f"{path}, line 1: missing column(s) {', '.join(map(repr, missing))} "
                          f"(the header has: {', '.join(header)})")
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise ConfigError(f"{path}, line 1: column(s) {', '.join(map(repr, repeated))} "
                          f"appear more than once")
