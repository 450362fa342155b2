"""The key scan kept beside the journal: a resume reads it instead of the input (issue 22
item 4), and only for the same input read the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from batch.inputs.scan import scan_column
from batch.inputs.scan_cache import kept_scan, load_scan, save_scan
from batch.inputs.shard import Shard, scan_shard


def test_a_kept_scan_is_used_for_the_same_identity_only(tmp_path: Path) -> None:
    # GIVEN a scan with duplicates, kept for identity "a"
    keys = ["x", "y", "x", "", "z", "y", "x"]
    calls: list[int] = []

    def scan() -> object:
        calls.append(1)
        return scan_column(keys)

    path = tmp_path / "out.csv.keyscan.npz"
    first = kept_scan(path, "a", scan)  # type: ignore[arg-type]
    # WHEN a resume asks again for "a", then for another identity
    again = kept_scan(path, "a", scan)  # type: ignore[arg-type]
    # THEN the first comes from the file, whole; another identity scans again
    assert len(calls) == 1
    assert (again.rows, again.counts, again.last_row) == (first.rows, first.counts, first.last_row)
    assert np.array_equal(again.hashes, first.hashes) and "z" in again
    assert again.duplicate("x") == (3, 7)
    assert load_scan(path, "b") is None
    kept_scan(path, "b", scan)  # type: ignore[arg-type]
    assert len(calls) == 2


def test_a_shards_foreign_rows_are_kept_and_a_damaged_file_is_ignored(tmp_path: Path) -> None:
    keys = [f"user{i}" for i in range(200)]
    shard = Shard.parse("1/3")
    made = scan_shard(lambda: iter(keys), shard)
    path = tmp_path / "k.npz"
    kept_scan(path, "s", lambda: made)
    back = load_scan(path, "s")
    assert back is not None and back.foreign is not None and made.foreign is not None
    assert [r for r in range(202) if r in back.foreign] == [r for r in range(202)
                                                           if r in made.foreign]
    assert (back.rows, back.input_rows) == (made.rows, made.input_rows)
    path.write_bytes(b"not a zip")
    assert load_scan(path, "s") is None


def test_a_scan_planted_beside_a_new_runs_report_is_never_read(
    emulator: Any, make_pool: Any, tmp_path: Path
) -> None:
    # GIVEN an input of 6 users and, beside the report, a kept scan made for this very input
    # (its identity computed as anyone holding the input could) that says it has 2 rows
    import json as _json

    from batch.cli import main
    from batch.inputs.scan import scan_column
    from batch.record.layout import RunFiles
    from batch.store.storage import file_sha256

    pool = make_pool(users=[{"username": f"u{i}"} for i in range(6)])
    source = tmp_path / "in.csv"
    source.write_text("username,tier\n" + "".join(f"u{i},gold\n" for i in range(6)))
    report = tmp_path / "out.csv"
    identity = _json.dumps([file_sha256(source), "username", "", "", ","])
    save_scan(RunFiles(report).keyscan, identity, scan_column(lambda: iter(["u0", "u1"])))
    # WHEN a fresh run (no journal) runs to that report
    code = main(["run", str(source), "--user-pool-id", pool, "--endpoint-url",
                 emulator.endpoint_url, "--report", str(report), "--yes", "--quiet",
                 "--rate", "500"])
    # THEN it scanned the input itself: every user written
    assert code == 0
    assert emulator.get_user_attributes(pool, "u5")["custom:tier"] == "gold"
