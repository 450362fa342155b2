"""The typed values that flow through a run: input rows, planned updates, results."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class Status(enum.StrEnum):
    """Exactly one of these ends every input row."""

    UPDATED = "updated"
    CREATED = "created"  # a sync's joiner: AdminCreateUser made the user (issue 21)
    UNCHANGED = "unchanged"
    INVALID = "invalid"
    FAILED = "failed"
    SKIPPED = "skipped"


#: Statuses that a resumed run does not redo.
FINISHED = frozenset({Status.UPDATED, Status.CREATED, Status.UNCHANGED, Status.INVALID})


@dataclass(frozen=True, slots=True)
class InputRow:
    """One data row of the input, values exactly as written.

    ``row`` is the 1-based data row: the first row after the CSV header (or the first
    Parquet row) is 1, whatever line it starts on.
    """

    row: int
    values: dict[str, str]
    error: str | None = None  # a row the reader could not split into the header's columns


@dataclass(frozen=True, slots=True)
class UserUpdate:
    """What to do to one user: set some attributes, delete others."""

    row: int
    username: str
    attributes: tuple[tuple[str, str], ...]
    deletes: tuple[str, ...] = ()
    key: str = ""  # the lookup value when the row is keyed by email/phone/sub

    @property
    def attribute_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.attributes) + self.deletes


@dataclass(frozen=True, slots=True)
class RowResult:
    """The one outcome of one input row."""

    row: int
    username: str
    status: Status
    attempts: int = 0
    error_code: str = ""
    error_message: str = ""
    elapsed_ms: int = 0
    key: str = ""

    def as_record(self) -> dict[str, str | int]:
        return {
            "row": self.row,
            "username": self.username,
            "key": self.key,
            "status": self.status.value,
            "attempts": self.attempts,
            "error_code": self.error_code,
            "error_message": self.error_message,
            "elapsed_ms": self.elapsed_ms,
        }

    @classmethod
    def from_record(cls, record: dict[str, object]) -> RowResult:
        return cls(
            row=int(str(record["row"])),
            username=str(record.get("username") or ""),
            status=Status(str(record["status"])),
            attempts=int(str(record.get("attempts") or 0)),
            error_code=str(record.get("error_code") or ""),
            error_message=str(record.get("error_message") or ""),
            elapsed_ms=int(str(record.get("elapsed_ms") or 0)),
            key=str(record.get("key") or ""),
        )


REPORT_COLUMNS = (
    "row",
    "username",
    "key",
    "status",
    "attempts",
    "error_code",
    "error_message",
    "elapsed_ms",
)


@dataclass(slots=True)
class Counters:
    """Live counts shared by the runner, the progress display and the summary."""

    by_status: dict[str, int] = field(default_factory=dict)
    by_error: dict[str, int] = field(default_factory=dict)
    calls: int = 0
    throttles: int = 0
    faults: int = 0

    def add(self, result: RowResult) -> None:
        self.by_status[result.status.value] = self.by_status.get(result.status.value, 0) + 1
        if result.error_code:
            self.by_error[result.error_code] = self.by_error.get(result.error_code, 0) + 1


@dataclass(slots=True)
class JobResult:
    """How a run ended: its exit code, its summary (as written beside the report), the report."""

    exit_code: int
    summary: dict[str, Any]
    report: Path
