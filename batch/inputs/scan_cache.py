"""The key scan kept beside the journal (``REPORT.keyscan.npz``), so a resume does not read the
whole input again before its first write (issue 22 item 4: at 2 M rows the scan was most of
the time to the first write).

The file holds what ``KeyScan`` learned (the sorted key hashes, the duplicates, the row counts,
another shard's rows) and the identity it was made for: the input's identity (SHA-256 of a
local file, or its parts' ``input_identity``) and the settings that decide what the scan reads
(key column, shard, format, delimiter). Anything else, or a file that cannot be read, means
the scan is done again: the cache can only save time, never change a run.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from batch.inputs.scan import KeyScan
from batch.rowset import RowSet
from batch.store.files import atomic_path


def load_scan(path: Path, identity: str) -> KeyScan | None:
    """The kept scan when it was made for ``identity``, else None."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            if meta.get("identity") != identity:
                return None
            hashes = np.array(data["hashes"], dtype=np.uint64)
            foreign = None
            if meta.get("foreign"):
                foreign = RowSet.from_bits(bytes(data["foreign"]), int(meta["foreign"]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError):
        return None
    counts = {int(k): int(v) for k, v in meta["counts"]}
    last_row = {int(k): int(v) for k, v in meta["last_row"]}
    return KeyScan(int(meta["rows"]), last_row, counts, hashes, foreign, int(meta["input_rows"]))


def save_scan(path: Path, identity: str, scan: KeyScan) -> None:
    meta = {"identity": identity, "rows": scan.rows, "input_rows": scan.input_rows,
            "counts": [[str(k), v] for k, v in scan.counts.items()],
            "last_row": [[str(k), v] for k, v in scan.last_row.items()],
            "foreign": len(scan.foreign) if scan.foreign is not None else 0}
    foreign = (np.frombuffer(scan.foreign.to_bytes(), np.uint8) if scan.foreign is not None
               else np.empty(0, np.uint8))
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
                 hashes=scan.hashes, foreign=foreign)


def kept_scan(path: Path | None, identity: str, scan: Callable[[], KeyScan]) -> KeyScan:
    """The kept scan for ``identity`` if there is one; else ``scan()``, kept for a resume."""
    if path is None:
        return scan()
    found = load_scan(path, identity)
    if found is not None:
        return found
    made = scan()
    try:
        save_scan(path, identity, made)
    except OSError:
        pass  # a resume scans again: slower, never wrong
    return made


def forget_scan(path: Path, journal: Path) -> None:
    """Remove the kept scan once ``journal`` is finished (its last line ``=complete``): no
    resume will read it."""
    tail = b"=complete\n"
    try:
        with open(journal, "rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - len(tail)))
            finished = handle.read() == tail
    except FileNotFoundError:
        finished = False
    if finished:
        path.unlink(missing_ok=True)
