"""A run's summary, typed: built once by the pipeline, written to ``REPORT.summary.json``, and
read back through the same type by ``report``, the HTML page, ``merge``, ``retry`` and ``undo``.

The JSON keys are the ones summaries have always had; ``load`` accepts files written before
this type existed (missing keys take their defaults, unknown keys are kept in ``extra``), and
the older shape of the quota (``{"UserUpdate": {"provisioned": 50}}``, or a bare number).
A dry run's summary is a plan (``dry_run: true`` with the planned counts): it loads as one,
its plan fields in ``extra``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batch.errors import UsageError
from batch.models import Status
from batch.record.layout import summary_path
from batch.store.files import write_text_atomic

#: Keys written only when set (a run's summary has always had the others, null or not).
_OMIT_EMPTY = {"hint", "rebuilt_from_journal", "undo_of", "force", "shards", "dry_run",
               "incremental"}


@dataclass(frozen=True, slots=True)
class Quota:
    """The enforced rates a run read (or assumed), and the share of UserUpdate it took."""

    rates: dict[str, float] = field(default_factory=dict)
    free_limit: dict[str, float] = field(default_factory=dict)
    source: str = ""  # "read from GetProvisionedLimit", or "defaults: GetProvisionedLimit <why>"
    share: float | None = None

    @property
    def read(self) -> bool:
        """The rates were read from Cognito (or named by an older summary), not assumed."""
        return not self.source.startswith("defaults")

    def rate(self, category: str = "UserUpdate") -> float | None:
        """The category's enforced calls/s when it was read; None when only assumed."""
        value = self.rates.get(category)
        return float(value) if self.read and isinstance(value, int | float) and value > 0 else None

    @classmethod
    def from_json(cls, value: Any) -> Quota | None:
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return cls({"UserUpdate": float(value)})  # an old summary's bare number
        if not isinstance(value, Mapping):
            return None
        share = value.get("share")
        share = float(share) if isinstance(share, int | float) else None
        source = str(value.get("source", ""))
        if isinstance(value.get("rates"), Mapping):  # what quota.Quotas.public() writes
            return cls({k: float(v) for k, v in value["rates"].items()
                        if isinstance(v, int | float)},
                       {k: float(v) for k, v in (value.get("free_limit") or {}).items()
                        if isinstance(v, int | float)}, source, share)  # fmt: skip
        rates: dict[str, float] = {}
        for category, inner in value.items():  # an older shape: {"UserUpdate": {"provisioned"}}
            if isinstance(inner, Mapping):
                source = str(inner.get("source", source or "GetProvisionedLimit"))
                for key in ("provisioned", "ProvisionedLimitValue", "value", "limit", "rate"):
                    if isinstance(inner.get(key), int | float):
                        rates[category] = float(inner[key])
                        break
        return cls(rates, {}, source, share) if rates else None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rates": dict(self.rates), "free_limit": dict(self.free_limit),
                               "source": self.source}  # fmt: skip
        if self.share is not None:
            out["share"] = self.share
        return out


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What a run (a retry, an undo, a merge of shards) did, in the summary file's words."""

    rows: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    calls: int = 0
    throttles: int = 0
    faults: int = 0
    duration_s: float = 0.0
    achieved_rate: float = 0.0  # updates/s of this attempt: carried rows are not in it
    rate: str | float = ""
    stopped: str | None = ""
    report: str = ""
    journal: str | None = None
    input: str | None = None
    input_sha256: str | None = None
    input_parts: Any = None
    shard: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    client_metadata_keys: list[str] = field(default_factory=list)
    resumed_rows: int = 0
    read_calls: int = 0
    lookup: str = ""
    pool: dict[str, Any] | None = None
    rate_final: float | None = None
    rate_low: float | None = None
    rate_high: float | None = None
    concurrency: dict[str, Any] | None = None
    rate_ceiling: float | None = None
    quota: Quota | None = None
    window_capped: str = ""
    timeline: str | None = None
    max_failures: dict[str, Any] | None = None
    undo: dict[str, Any] | None = None  # the before-images this run recorded
    exit_code: int | None = None
    hint: str | None = None
    rebuilt_from_journal: bool = False
    undo_of: str | None = None  # an undo: the before-images it put back
    force: bool | None = None
    shards: list[dict[str, Any]] | None = None  # a merge: each shard's own figures
    dry_run: bool = False
    incremental: dict[str, Any] | None = None  # what the state spared, the drift verified
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know

    # -- reading -----------------------------------------------------------------------------

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunSummary:
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in data.items() if k in names}
        known["quota"] = Quota.from_json(data.get("quota"))
        known["counts"] = {str(k): int(v) for k, v in (data.get("counts") or {}).items()
                           if isinstance(v, int | float)}  # fmt: skip
        extra = {k: v for k, v in data.items() if k not in names}
        return cls(**known, extra=extra)

    @classmethod
    def load(cls, path: Path) -> RunSummary:
        """The summary file ``path`` (``FileNotFoundError`` passes through: callers word it);
        one that is not a summary is a ``UsageError``."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            raise UsageError(f"{path}: not a run summary") from None
        if not isinstance(data, Mapping):
            raise UsageError(f"{path}: not a run summary")
        return cls.from_json(data)

    @classmethod
    def of(cls, report: Path) -> RunSummary:
        """The summary beside ``report``."""
        return cls.load(summary_path(report))

    # -- writing -----------------------------------------------------------------------------

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "extra":
                continue
            if f.name in _OMIT_EMPTY and value in (None, False):
                continue
            out[f.name] = value.as_json() if isinstance(value, Quota) else value
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out

    def write(self, report: Path) -> Path:
        return write_summary(report, self.as_json())

    def replace(self, **changes: Any) -> RunSummary:
        return dataclasses.replace(self, **changes)

    # -- facts -------------------------------------------------------------------------------

    @property
    def updated(self) -> int:
        return self.counts.get(Status.UPDATED.value, 0)


def status_counts(by_status: Mapping[str, int]) -> dict[str, int]:
    """Every status, in order, zero when absent: the ``counts`` of a summary."""
    return {s.value: int(by_status.get(s.value, 0)) for s in Status}


def achieved_rate(updated: int, seconds: float) -> float:
    """Updates/s, of rows this attempt wrote over this attempt's time."""
    return round(updated / seconds, 2) if seconds > 0 else 0.0


def write_summary(report: Path, summary: Mapping[str, Any]) -> Path:
    path = summary_path(report)
    write_text_atomic(path, json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return path


def format_summary(summary: RunSummary | Mapping[str, Any]) -> str:
    """The human summary printed on stderr at the end of a run."""
    s = summary if isinstance(summary, RunSummary) else RunSummary.from_json(summary)
    counts = s.counts
    ranged = s.rate_low is not None and s.rate_high is not None and s.rate_final is not None
    lines = [
        f"cognito-batch: {s.rows} rows in {s.duration_s:.1f}s — "
        + ", ".join(f"{k} {counts.get(k, 0)}" for k in
                    ("updated", "unchanged", "invalid", "failed", "skipped")),
        f"  calls {s.calls}, throttled {s.throttles}, faults retried "
        f"{s.faults}, achieved {s.achieved_rate:.1f} updates/s "
        f"(rate {s.rate}"
        + (f": from {s.rate_low:g} to {s.rate_high:g}, ending at {s.rate_final:g}/s)"
           if ranged else ")"),
    ]  # fmt: skip
    if s.quota is not None and s.quota.rates:
        lines.append(f"  quota: UserUpdate {s.quota.rates.get('UserUpdate', 0):g}/s "
                     f"({s.quota.source}); the run took up to "
                     f"{100 * float(s.quota.share or 0):.0f}% of it")  # fmt: skip
    if s.window_capped:
        lines.append(f"  capped: {s.window_capped}")
    if s.incremental:
        inc = s.incremental
        lines.append(f"  incremental: {inc.get('changed', 0)} rows changed, "
                     f"{inc.get('unchanged', 0)} unchanged since the state; verified "
                     f"{inc.get('verified', 0)}, drift {inc.get('drift', 0)}")  # fmt: skip
    if s.errors:
        lines.append("  errors: " + ", ".join(f"{k} {v}" for k, v in sorted(s.errors.items())))
    if s.stopped:
        lines.append(f"  stopped: {s.stopped}")
    lines.append(f"  report: {s.report}")
    return "\n".join(lines)
