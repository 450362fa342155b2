"""What watching the input costs: rows read with and without ``guard.InputWatch``.

The watch stats the input after every row read while applying (after every 256 in the passes
that apply nothing), and hashes a file up to 64 MiB again at the end. The loops read and parse
the same CSV in the same run, interleaved, best of ``--repeat``, so the ratios, not the seconds,
are the result (the machine is shared, and a system call's cost moves with its load).

    .venv/bin/python bench/guard.py [--rows 200000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from batch.inputs.reader import iter_rows, open_input
from batch.record.guard import PLAN_CHECK_EVERY, InputWatch
from batch.store.storage import file_sha256


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "in.csv"
        with open(path, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["username", "tier", "department"])
            writer.writerows([f"k{i:07d}", f"t{i % 13}", f"d{i % 17}"] for i in range(args.rows))
        source = open_input(path)

        def plain() -> None:
            file_sha256(path)  # a run without the watch hashes once too (the journal's header)
            for _ in iter_rows(source):
                pass

        def watched(every: int) -> Callable[[], None]:
            def loop() -> None:
                watch = InputWatch(path)
                watch.check_every = every
                watch.hashed()  # the same hash; then the stats, and the hash again at the end
                for _ in watch.rows(iter_rows(source), expected=args.rows):
                    pass

            return loop

        loops = {"plain": plain, "apply (every row)": watched(1),
                 f"plan (every {PLAN_CHECK_EVERY})": watched(PLAN_CHECK_EVERY)}
        best = dict.fromkeys(loops, float("inf"))
        for _ in range(args.repeat):
            for name, fn in loops.items():
                started = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - started)
    n, base = args.rows, best["plain"]
    print(f"{n} rows: read+parse {base / n * 1e6:.2f} us/row")
    for name in list(loops)[1:]:
        print(f"  watched, {name}: {best[name] / n * 1e6:.2f} us/row, ratio "
              f"{best[name] / base:.2f}, +{(best[name] - base) / n * 1e6:.2f} us/row")


if __name__ == "__main__":
    main()
