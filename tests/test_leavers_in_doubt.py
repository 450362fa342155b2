"""Leavers in doubt (a ``--disable-missing --undo`` sync killed with disables in flight):
which earlier images a resume takes back, and how it numbers and resolves them."""

from __future__ import annotations

from pathlib import Path

from batch.commands.sync import _in_doubt, _settled
from batch.models import RowResult, Status
from batch.plan.operations import Kind, Operation, SyncUpdate
from batch.plan.sync_resolve import GroupSource, SyncResolver
from batch.record.before_images import UndoLog, UndoRecord, earlier_leavers

HEADER = {"pool": "us-east-1_x", "input_sha256": "ab", "settings": "cd"}


def _leaver(row: int, name: str) -> UndoRecord:
    return UndoRecord(row, name, {"email_verified": None}, {}, enabled=(True, False))


def test_earlier_leavers_are_the_unfinished_runs_disable_only_images_past_the_input(
    tmp_path: Path
) -> None:
    # GIVEN an unfinished run's images: an input row, two leavers, and a row past the input
    # that writes an attribute (not a leaver's image)
    path = tmp_path / "out.csv.undo.jsonl"
    log = UndoLog(path, HEADER)
    log.record(UndoRecord(3, "u3", {"custom:tier": None}, {"custom:tier": "t"}))
    log.record(_leaver(21, "a"))
    log.record(_leaver(22, "b"))
    log.record(UndoRecord(23, "c", {"custom:tier": None}, {"custom:tier": "t"},
                          enabled=(True, False)))
    log.close()
    # THEN the leavers' rows and users are taken, and the highest row any image names
    assert earlier_leavers(path, HEADER, past=20) == ({21: "a", 22: "b"}, 23)
    # ... but nothing from another run's file, nor from a finished one
    assert earlier_leavers(path, {**HEADER, "settings": "other"}, past=20) == ({}, 0)
    log = UndoLog(path, HEADER)
    log.complete()
    log.close()
    assert earlier_leavers(path, HEADER, past=20) == ({}, 0)
    assert earlier_leavers(tmp_path / "none.jsonl", HEADER, past=20) == ({}, 0)


def test_a_leaver_in_doubt_keeps_its_row_unless_its_user_is_journaled_already() -> None:
    journaled = {"a": (21, True), "b": (22, False)}
    twice: list[tuple[int, str]] = []
    # row 22 is journaled (unfinished): the journal knows it; 23 names a journaled user
    _in_doubt({22: "b", 23: "a", 24: "c"}, journaled, twice)
    assert journaled == {"a": (21, True), "b": (22, False), "c": (24, False)}
    assert twice == [(23, "a")]


def test_an_imaged_leaver_disabled_already_resolves_unchanged_with_no_call() -> None:
    # GIVEN a settled leaver row whose image an earlier attempt recorded, and one with none
    item = _settled(24, "c", True, imaged=True)
    plain = _settled(25, "d", True)
    assert isinstance(plain, RowResult) and plain.status is Status.UNCHANGED
    assert isinstance(item, SyncUpdate) and item.preplanned and not item.ops
    resolver = SyncResolver(lambda u: u, lambda: None, GroupSource(frozenset()))
    # THEN the resolve step says unchanged (the before-images make it updated), no read
    resolved = resolver(item)
    assert isinstance(resolved, RowResult) and resolved.status is Status.UNCHANGED
    assert (resolved.row, resolved.username) == (24, "c")
    # ... while a leaver still to disable is sent as planned
    disable = SyncUpdate(21, "a", (), enabled=False, preplanned=True,
                         ops=(Operation(Kind.DISABLE, "a"),))
    assert resolver(disable) is disable
