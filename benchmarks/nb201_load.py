"""How long loading the NAS-Bench-201 tables takes (the target: about a second, so that
comparing strategies against the table stays a matter of seconds).

Run from the repository root:

    python benchmarks/nb201_load.py [--data DIR] [--repeats 5] [--target-s 1.0]

It reads and checks the five CSV files `--repeats` times in this process (nothing is
cached between loads) and prints each time, the median, and median / target (PASS at or
below 1). The tables are found as the tests find them: `--data`, else
`ARCHSEARCH_NB201_DIR`, else `../shared/data/nb201` beside the repository.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from archsearch.benchmarks import NB201_ENV_VAR, NB201_FILES, NasBench201Table


def data_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    if os.environ.get(NB201_ENV_VAR):
        return Path(os.environ[NB201_ENV_VAR])
    return Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nb201"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="directory of the five NAS-Bench-201 CSV files")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--target-s", type=float, default=1.0)
    args = parser.parse_args(argv)
    folder = data_dir(args.data)
    missing = [name for name in NB201_FILES.values() if not (folder / name).is_file()]
    if missing or args.repeats < 1:
        reason = f"missing in {folder}: {', '.join(missing)}" if missing else "--repeats < 1"
        print(f"nb201_load: {reason}", file=sys.stderr)
        return 2
    seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        NasBench201Table.load(folder)
        seconds.append(time.perf_counter() - start)
        print(f"load: {seconds[-1]:.3f} s", flush=True)
    median_s = statistics.median(seconds)
    ratio = median_s / args.target_s
    print(f"median {median_s:.3f} s; median / target ({args.target_s:g} s) = {ratio:.2f} "
          f"[{'PASS' if ratio <= 1 else 'FAIL'}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
