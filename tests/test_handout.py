"""Write-ahead marks (``engine.handout``, journal version 3): what a resume may be in doubt of.

A row goes to a worker only once the journal says rows up to it may have been sent (and, for
an S3 report, once S3 holds that line); a resume reads first exactly the unfinished rows under
the highest mark (``plan.in_doubt``). Issue 20 item 6.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import pytest
from test_checkpoint import Flaky

from batch.engine.handout import LOCAL_STEP, MAX_STEP, Handout, step_for
from batch.models import RowResult, Status, UserUpdate
from batch.plan.in_doubt import HELD, ReadFirst, diffing
from batch.plan.lookup import Resolver
from batch.plan.operations import Kind, Operation, SyncUpdate
from batch.plan.sync_resolve import GroupSource, SyncResolver
from batch.record.journal import Journal, JournalHeader, encode, mark_line, read_journal
from batch.remote.checkpoint import THROUGH_ATTEMPTS, Checkpoint, S3Report
from batch.remote.segments import rows_in_range

HEADER = JournalHeader("sha", "settings")


def update(row: int) -> UserUpdate:
    return UserUpdate(row, f"u{row}", (("custom:tier", "gold"),))


def handed_out(path: Path, last_row: int | None = None) -> int:
    state = read_journal(path, last_row=last_row, of=HEADER if last_row else None)
    assert state is not None
    return state.handed_out


class Durable:
    """A copy elsewhere that says when it holds the journal up to an offset."""

    def __init__(self, path: Path, fail: str = "") -> None:
        self.path, self.fail = path, fail
        self.calls: list[tuple[int, int]] = []  # (offset asked, journal bytes then)

    def through(self, offset: int) -> str:
        self.calls.append((offset, self.path.stat().st_size))
        return self.fail


def test_each_row_is_covered_by_a_mark_before_it_is_handed_out(tmp_path: Path) -> None:
    # GIVEN a journal and a feed of 1,000 updates
    path = tmp_path / "j"
    journal = Journal(path, HEADER)
    handout = Handout(journal, step=LOCAL_STEP)
    # WHEN each row is taken from the feed
    for item in handout.feed(update(r) for r in range(1, 1001)):
        # THEN the journal (as a resume would read it now) already covers it
        assert handed_out(path) >= item.row
    journal.close()
    # ... with one mark line per half step, not per row
    assert handout.marks <= 1000 // (LOCAL_STEP // 2) + 1
    # ... and the marks run at most a step ahead of the last row handed out
    assert handed_out(path) <= 1000 + LOCAL_STEP


def test_results_are_not_marked_they_are_never_sent(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal = Journal(path, HEADER)
    items = [RowResult(r, f"u{r}", Status.INVALID) for r in range(1, 500)]
    assert list(Handout(journal, step=8).feed(items)) == items
    journal.close()
    assert handed_out(path) == 0


def test_an_earlier_attempts_mark_is_carried_and_not_lowered(tmp_path: Path) -> None:
    # GIVEN a resume whose earlier attempt marked up to row 900
    path = tmp_path / "j"
    journal = Journal(path, HEADER, carry=[RowResult(1, "u1", Status.UPDATED, 1)],
                      handed_out=900)
    # WHEN this attempt hands out rows 2..10
    list(Handout(journal, step=8, start=900).feed(update(r) for r in range(2, 11)))
    journal.close()
    # THEN the compacted journal still says 900: those rows are still in doubt if it is killed
    assert handed_out(path) == 900
    state = read_journal(path)
    assert state is not None and list(state.records()) == [RowResult(1, "u1", Status.UPDATED, 1)]


def test_a_copied_journal_holds_the_mark_before_the_rows_go_out(tmp_path: Path) -> None:
    # GIVEN an S3-like copy and marks 100 rows ahead
    path = tmp_path / "j"
    journal = Journal(path, HEADER)
    durable = Durable(path)
    handout = Handout(journal, step=100, durable=durable)
    seen: list[int] = []
    for item in handout.feed(update(r) for r in range(1, 301)):
        # THEN before each row, the copy holds a mark covering it
        assert handout.safe >= item.row
        seen.append(item.row)
    journal.close()
    assert seen == list(range(1, 301))
    # ... each time every byte of the journal up to that mark (the mark line included)
    assert all(offset == size for offset, size in durable.calls)
    # ... asked only when the feed passed the last mark it holds (about once per half step)
    assert 2 <= len(durable.calls) <= 300 // 50


def test_a_mark_the_copy_cannot_hold_stops_the_feed_before_the_row(tmp_path: Path) -> None:
    # GIVEN a copy that cannot be written (S3 down for good)
    path = tmp_path / "j"
    journal = Journal(path, HEADER)
    stops: list[str] = []
    handout = Handout(journal, step=10, durable=Durable(path, fail="S3 is down"),
                      stop=stops.append)
    # WHEN rows are fed
    out = list(handout.feed(update(r) for r in range(1, 50)))
    journal.close()
    # THEN none was handed out, and the run was asked to stop, saying why
    assert out == [] and stops == ["S3 is down"]


def test_step_for_a_local_and_a_copied_journal() -> None:
    assert step_for(150.0, lead_seconds=0) == LOCAL_STEP
    assert step_for(150.0, lead_seconds=5.0) == 750
    assert step_for(1.0, lead_seconds=5.0) == LOCAL_STEP
    assert step_for(10_000.0, lead_seconds=5.0) == MAX_STEP
    assert step_for(float("inf"), lead_seconds=5.0) == MAX_STEP


# -- the journal's mark lines -----------------------------------------------------------------


def test_a_mark_past_the_inputs_end_is_read_as_its_end(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal = Journal(path, HEADER)
    journal.mark(5000)
    journal.close()
    assert handed_out(path, last_row=300) == 300
    assert handed_out(path) == 5000


@pytest.mark.parametrize("payload", [b">x", b">0", b">-3", b">"])
def test_a_malformed_mark_ends_what_is_trusted(tmp_path: Path, payload: bytes) -> None:
    # GIVEN a journal whose second result follows a garbled mark (its checksum right)
    path = tmp_path / "j"
    journal = Journal(path, HEADER)
    journal.write(RowResult(1, "u1", Status.UPDATED, 1))
    journal.close()
    with open(path, "ab") as handle:
        handle.write(b"%08x\t%s\n" % (zlib.crc32(payload), payload))
        handle.write(encode(RowResult(2, "u2", Status.UPDATED, 1)))
    # THEN reading stops at the mark: row 2 is not trusted (it is redone), nothing is in doubt
    state = read_journal(path)
    assert state is not None and 1 in state.finished and 2 not in state.finished
    assert state.handed_out == 0


def test_a_version_2_journal_still_resumes_with_nothing_in_doubt(tmp_path: Path) -> None:
    # GIVEN an unfinished journal written by the version before marks
    path = tmp_path / "j"
    journal = Journal(path, HEADER)
    journal.write(RowResult(1, "u1", Status.UPDATED, 1))
    journal.close()
    lines = path.read_bytes().split(b"\n", 1)
    record = json.loads(lines[0])
    record["journal"] = 2
    path.write_bytes(json.dumps(record).encode() + b"\n" + lines[1])
    # THEN it is read (not refused as an old version), its rows finished, none in doubt
    state = read_journal(path)
    assert state is not None and state.version == 2 and 1 in state.finished
    assert state.handed_out == 0


def test_segments_with_mark_lines_are_in_range() -> None:
    ok = mark_line(40) + b"00000000\t=complete\n"
    assert rows_in_range(ok)
    for bad in (b">0", b">x"):
        assert not rows_in_range(b"%08x\t%s\n" % (0, bad))


# -- the S3 checkpoint puts a mark before its rows go out -------------------------------------


@pytest.mark.parametrize("failures, expect_ok", [(2, True), (THROUGH_ATTEMPTS, False)])
def test_checkpoint_through_puts_the_mark_now_retrying_then_giving_up(
    make_bucket: Any, s3_endpoint: str, tmp_path: Path, failures: int, expect_ok: bool
) -> None:
    # GIVEN a checkpoint whose timer would not upload for a minute, and flaky puts
    report = S3Report(f"s3://{make_bucket()}/out/report.csv", spool_root=str(tmp_path))
    store = Flaky(report.store, failures)  # its last failure writes: the answer lost
    sleeps: list[float] = []
    checkpoint = Checkpoint(store, report.segments, report.journal, interval=60,
                            sleep=sleeps.append)  # type: ignore[arg-type]
    journal = Journal(report.journal, HEADER)
    checkpoint.begin(resumed=False, restored_segments=0, clear=report.clear)
    # WHEN a mark must be in S3 before its rows go out
    offset = journal.mark(128)
    why = checkpoint.through(offset)
    journal.close()
    # THEN it is put now (after jittered retries), or the run is told why it cannot be
    if expect_ok:
        assert why == "" and checkpoint.offset >= offset and len(sleeps) == failures
    else:
        assert "cannot reach S3" in why and checkpoint.offset < offset
        assert len(sleeps) == THROUGH_ATTEMPTS - 1


def test_checkpoint_through_a_lost_lease_stops_at_once_putting_nothing(
    make_bucket: Any, s3_endpoint: str, tmp_path: Path
) -> None:
    # GIVEN a checkpoint whose run lost the report's lease to another run
    report = S3Report(f"s3://{make_bucket()}/out/report.csv", spool_root=str(tmp_path))
    store = Flaky(report.store, 0)
    checkpoint = Checkpoint(store, report.segments, report.journal, interval=60,
                            sleep=lambda s: None)  # type: ignore[arg-type]
    journal = Journal(report.journal, HEADER)
    checkpoint.begin(resumed=False, restored_segments=0, clear=report.clear)
    checkpoint.lost = "s3://…/seg-000001: written by another run; this run stops"
    # WHEN a mark must be in S3 before its rows go out
    why = checkpoint.through(journal.mark(32))
    journal.close()
    # THEN the run is told why at once (the feed stops), and no segment is put or retried
    assert why == checkpoint.lost and store.puts == 0


# -- rows in doubt are read first --------------------------------------------------------------


class Users:
    """A lookup over a dict: what each user holds."""

    def __init__(self, users: dict[str, dict[str, str]]) -> None:
        self.users, self.reads = users, 0

    def find(self, key: str) -> list[dict[str, str]]:
        self.reads += 1
        user = self.users.get(key)
        return [{"username": key, **user}] if user is not None else []

    def close(self) -> None:
        pass


def test_rows_in_doubt_are_diffed_and_the_rest_left_as_they_are() -> None:
    # GIVEN u1 already holding its row's value, u2 not, and rows up to 2 in doubt
    users = Users({"u1": {"custom:tier": "gold"}, "u2": {"custom:tier": "old"},
                   "u3": {"custom:tier": "gold"}})
    plain = Resolver(users, "username", False, False)  # before-images read, no diff
    read_first = ReadFirst(plain, diffing(plain) or plain, below=2)
    # WHEN each row is resolved
    one, two, three = (read_first(update(r)) for r in (1, 2, 3))
    # THEN the one in doubt that holds is not written; the one that does not is; a row
    # above the mark is written as it would be (never sent before: no diff)
    assert isinstance(one, RowResult) and one.status is Status.UNCHANGED
    assert one.error_message == HELD
    assert isinstance(two, UserUpdate) and isinstance(three, UserUpdate)
    assert read_first.figures() == {"read": 2, "held": 1}


def test_without_any_resolver_only_the_rows_in_doubt_are_read() -> None:
    users = Users({f"u{r}": {"custom:tier": "gold"} for r in range(1, 11)})
    read_first = ReadFirst(None, Resolver(users, "username", True, False), below=3)
    out = [read_first(update(r)) for r in range(1, 11)]
    assert users.reads == 3
    assert [isinstance(o, RowResult) for o in out] == [True] * 3 + [False] * 7


def test_a_leaver_in_doubt_is_not_counted_as_read() -> None:
    # GIVEN a --disable-missing leaver in doubt (planned from the pool's listing: its resolve
    # reads nothing) and an input row in doubt
    users = Users({"u1": {"custom:tier": "gold"}})
    sync = SyncResolver(Resolver(users, "username", True, False), lambda: None,
                        GroupSource(frozenset()))
    read_first = ReadFirst(sync, diffing(sync) or sync, below=10)
    leaver = SyncUpdate(5, "gone", (), enabled=False, preplanned=True,
                        ops=(Operation(Kind.DISABLE, "gone"),), known=(("@enabled", "true"),))
    # WHEN both are resolved
    assert read_first(leaver) is leaver
    read_first(update(1))
    # THEN the summary's figures count the one read made, not the leaver (before: 2 read)
    assert users.reads == 1
    assert read_first.figures() == {"read": 1, "held": 1}
