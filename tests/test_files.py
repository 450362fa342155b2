"""Private files: owner-only, atomic, never through a symlink."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from batch.store.files import (
    atomic_path,
    atomic_write,
    open_private,
    private_dir,
    remove_stale_temporaries,
    write_text_atomic,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_new_folders_and_files_are_owner_only(tmp_path: Path) -> None:
    # GIVEN a report path two folders deep that does not exist yet
    target = tmp_path / "a" / "b" / "report.csv"
    # WHEN it is opened and a summary written beside it
    with open_private(target) as handle:
        handle.write("row\n")
    write_text_atomic(target.with_name("summary.json"), "{}")
    # THEN every folder made is 0700 and every file 0600, whatever the umask
    assert mode(tmp_path / "a") == mode(tmp_path / "a" / "b") == 0o700
    assert mode(target) == mode(target.with_name("summary.json")) == 0o600


def test_existing_folders_keep_their_mode(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    private_dir(shared)
    assert mode(shared) == 0o755


def test_a_symlink_at_the_target_is_refused(tmp_path: Path) -> None:
    # GIVEN someone planted a link where the report will go, pointing at a file of ours
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    link = tmp_path / "report.csv"
    link.symlink_to(victim)
    # WHEN the tool opens the report THEN it refuses and the victim is untouched
    with pytest.raises(OSError):
        open_private(link)
    with pytest.raises(OSError):
        open_private(link, "a")
    assert victim.read_text() == "precious"


def test_atomic_replace_leaves_old_or_new_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "summary.json"
    target.write_text("old")
    # WHEN a write fails half way THEN the old file stands and no temporary is left
    with pytest.raises(RuntimeError):
        with atomic_write(target) as handle:
            handle.write("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]
    # WHEN it succeeds THEN the new content replaces it, owner-only
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name != target.name + ".tmp"
        tmp.write_text("new")
    assert target.read_text() == "new" and mode(target) == 0o600


def test_atomic_replace_of_a_symlink_replaces_the_link_not_its_target(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    link = tmp_path / "summary.json"
    link.symlink_to(victim)
    write_text_atomic(link, "{}")
    assert victim.read_text() == "precious"
    assert not link.is_symlink() and link.read_text() == "{}"


def test_temporaries_a_killed_writer_left_are_removed(tmp_path: Path) -> None:
    # GIVEN the temporaries of a Parquet report and its journal a killed run left, and others'
    report = tmp_path / "r[1].parquet"
    for name in (".r[1].parquet.abc12_yz.tmp", ".r[1].parquet.journal.abc12_yz.tmp",
                 ".other.abc12_yz.tmp",
                 "r[1].parquet"):
        (tmp_path / name).write_text("x")
    # WHEN the next run starts on that report
    removed = remove_stale_temporaries(report)
    # THEN only the report's own temporaries are gone (the journal's are named after it)
    assert removed == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".other.abc12_yz.tmp", ".r[1].parquet.journal.abc12_yz.tmp", "r[1].parquet"
    ]
