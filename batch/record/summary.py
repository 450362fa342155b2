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
               "incremental", "in_doubt"}


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
            free = value.get("free_limit")
            free = free if isinstance(free, Mapping) else {}
            return cls({str(k): float(v) for k, v in value["rates"].items()
                        if isinstance(v, int | float)},
                       {str(k): float(v) for k, v in free.items()
                        if isinstance(v, int | float)}, source, share)
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
                               "source": self.source}
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
    # A resume: the rows an earlier attempt may have sent, read first; how many held already.
    in_doubt: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know

    # -- reading -----------------------------------------------------------------------------

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunSummary:
        """``data`` typed: a number where a number is due (an int's float, or an int, taken as
        it), a null as the field's default; any other wrong type is a ``UsageError`` naming the
        field (anyone can edit the file: it must not reach a command as a traceback)."""
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known: dict[str, Any] = {k: None if v is None and k in _NULLABLE else typed(k, v)
                 for k, v in data.items() if k in names}
        known["quota"] = Quota.from_json(data.get("quota"))
        extra = {k: v for k, v in data.items() if k not in names}
        return cls(**known, extra=extra)

    @classmethod
    def load(cls, path: Path) -> RunSummary:
        """The summary file ``path`` (``FileNotFoundError`` passes through: callers word it);
        one that is not a summary, or has a field of the wrong type, is a ``UsageError``."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            raise UsageError(f"{path}: not a run summary") from None
        if not isinstance(data, Mapping):
            raise UsageError(f"{path}: not a run summary")
        try:
            return cls.from_json(data)
        except UsageError as exc:
            raise UsageError(f"{path}: not a run summary: {exc}") from None

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


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


#: The fields that may be null; a null elsewhere is the field's default.
_DEFAULTS: dict[str, Any] = {f.name: getattr(RunSummary(), f.name)
                             for f in dataclasses.fields(RunSummary)}
_NULLABLE = {f.name for f in dataclasses.fields(RunSummary) if "None" in str(f.type)}
#: Each field's JSON shape: what ``typed`` accepts (None is the default, taken before).
_NUMBER_MAPS = {"counts", "errors"}
_MAPS = {"settings", "pool", "concurrency", "max_failures", "undo", "incremental", "in_doubt"}
_INTS = {"rows", "calls", "throttles", "faults", "resumed_rows", "read_calls"}
_FLOATS = {"duration_s", "achieved_rate", "rate_final", "rate_low", "rate_high", "rate_ceiling"}
_TEXTS = {"stopped", "report", "journal", "input", "input_sha256", "shard", "lookup",
          "window_capped", "timeline", "hint", "undo_of"}
_FLAGS = {"rebuilt_from_journal", "force", "dry_run"}


def typed(name: str, value: Any) -> Any:
    """``value`` as field ``name`` holds it, or a ``UsageError`` naming the field."""
    if value is None:
        return _DEFAULTS[name]
    if name in _INTS and _is_number(value) and float(value).is_integer():
        return int(value)
    if name in _FLOATS and _is_number(value):
        return float(value)
    if name in _TEXTS and isinstance(value, str):
        return value
    if name in _FLAGS and isinstance(value, bool):
        return value
    if name in _MAPS and isinstance(value, Mapping):
        return dict(value)
    if name in _NUMBER_MAPS and isinstance(value, Mapping):
        if all(_is_number(v) for v in value.values()):
            return {str(k): int(v) for k, v in value.items()}
    elif name == "rate" and (isinstance(value, str) or _is_number(value)):
        return value
    elif name == "exit_code" and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif name == "client_metadata_keys" and isinstance(value, list):
        if all(isinstance(k, str) for k in value):
            return list(value)
    elif name == "shards" and isinstance(value, list):
        if all(isinstance(s, Mapping) for s in value):
            return [dict(s) for s in value]
    elif name in ("input_parts", "quota"):
        return value
    raise UsageError(f"field {name!r} has the wrong type ({type(value).__name__})")


def status_counts(by_status: Mapping[str, int]) -> dict[str, int]:
    """Every status, in order, zero when absent: the ``counts`` of a summary. ``created``
    only when a sync created users: a run that cannot create keeps its summary's shape."""
    return {s.value: int(by_status.get(s.value, 0)) for s in Status
            if s is not Status.CREATED or by_status.get(s.value)}


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
                    ("updated", "unchanged", "invalid", "failed", "skipped"))
        + (f", created {counts['created']}" if counts.get("created") else ""),
        f"  calls {s.calls}, throttled {s.throttles}, faults retried "
        f"{s.faults}, achieved {s.achieved_rate:.1f} updates/s "
        f"(rate {s.rate}"
        + (f": from {s.rate_low:g} to {s.rate_high:g}, ending at {s.rate_final:g}/s)"
           if ranged else ")"),
    ]
    if s.quota is not None and s.quota.rates:
        lines.append(f"  quota: UserUpdate {s.quota.rates.get('UserUpdate', 0):g}/s "
                     f"({s.quota.source}); the run took up to "
                     f"{100 * float(s.quota.share or 0):.0f}% of it")
    if s.window_capped:
        lines.append(f"  capped: {s.window_capped}")
    if s.incremental:
        inc = s.incremental
        lines.append(f"  incremental: {inc.get('changed', 0)} rows changed, "
                     f"{inc.get('unchanged', 0)} unchanged since the state; verified "
                     f"{inc.get('verified', 0)}, drift {inc.get('drift', 0)}")
    if s.in_doubt:
        lines.append(f"  in doubt after a restart: {s.in_doubt.get('read', 0)} rows read "
                     f"first, {s.in_doubt.get('held', 0)} already held their values (not "
                     "written again)")
    if s.errors:
        lines.append("  errors: " + ", ".join(f"{k} {v}" for k, v in sorted(s.errors.items())))
    if s.stopped:
        lines.append(f"  stopped: {s.stopped}")
    lines.append(f"  report: {s.report}")
    return "\n".join(lines)
