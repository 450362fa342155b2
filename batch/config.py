"""The job definition: a TOML file under jobs/ plus command-line flags, validated once.

Flags override the job file. Paths in a job file are relative to the job file's folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from batch.errors import UsageError

DEFAULT_RATE = 25.0  # Cognito's default UserUpdate quota, requests/s, account-wide
MAX_WORKERS = 256
DEFAULT_WORKERS = 64  # a bound, not a target: threads start only when the rate needs them


@dataclass(frozen=True, slots=True)
class JobConfig:
    """Everything one run needs. Field names match the job file's keys."""

    input: str = ""
    user_pool_id: str = ""
    report: str = ""
    format: str = ""
    delimiter: str = ","
    username_column: str = "username"
    key: str = "username"
    columns: Mapping[str, str] = field(default_factory=dict)
    exclude: tuple[str, ...] = ()
    empty: str = "leave"
    on_duplicate: str = "invalid"
    rate: str = ""  # calls/s, "P%" of the enforced quota, "auto"; empty: polite (quota.py)
    max_rate: float = 0.0  # with rate = "auto": the ceiling (0: none)
    rate_algorithm: str = "shared"  # shared; or, for comparison: measured, aimd, cubic, fixed
    workers: int = DEFAULT_WORKERS
    max_attempts: int = 8
    max_row_seconds: float = 300.0
    per_user_rate: float = 10.0
    list_rate: float = 25.0  # ListUsers calls/s for reads (Cognito's UserList quota is ~30/s)
    get_rate: float = 100.0  # AdminGetUser calls/s (Cognito's UserRead quota is ~120/s)
    client_metadata: Mapping[str, str] = field(default_factory=dict)
    region: str = ""
    profile: str = ""
    endpoint_url: str = ""
    confirm: bool = True
    quiet: bool = False
    mark_verified: bool = False
    skip_unchanged: bool = False
    dry_run: bool = False
    schema_check: bool = True
    fresh: bool = False
    rows: tuple[int, ...] = ()  # only these data rows (``retry``); empty: all

    # -- derived -----------------------------------------------------------------------------

    @property
    def auto_rate(self) -> bool:
        return self.rate.strip().lower() == "auto"

    @property
    def polite_rate(self) -> bool:
        """No --rate: take the part of the quota others leave, politely (ratelimit.py)."""
        return not self.rate.strip()

    @property
    def rate_share(self) -> float | None:
        """``--rate P%``: the share of the enforced UserUpdate quota (0..1), else None."""
        text = self.rate.strip()
        return float(text[:-1]) / 100.0 if text.endswith("%") else None

    @property
    def fixed_rate(self) -> float:
        """``--rate N`` in calls/s; Cognito's default quota for the other forms (before the
        quota is read: ``job.py`` resolves shares and the polite default against it)."""
        text = self.rate.strip()
        if not text or self.auto_rate or text.endswith("%"):
            return DEFAULT_RATE
        return float(text)

    def report_path(self) -> Path:
        if self.report:
            return Path(self.report)
        return Path("reports") / (Path(self.input).stem + ".report.csv")

    def fingerprint(self) -> str:
        """Hash of the settings that change what a run writes (not how fast)."""
        keys = (
            "user_pool_id",
            "username_column",
            "key",
            "columns",
            "exclude",
            "empty",
            "on_duplicate",
            "mark_verified",
            "skip_unchanged",
            "format",
            "delimiter",
            "rows",
        )
        data = {k: _jsonable(getattr(self, k)) for k in keys}  # fmt: skip
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def public(self) -> dict[str, Any]:
        """The settings as JSON, for the summary (nothing secret is in a JobConfig)."""
        data = {k: _jsonable(v) for k, v in asdict(self).items()}
        data.pop("rows", None)
        return data


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(sorted(value.items()))
    if isinstance(value, tuple):
        return list(value)
    return value


_FIELDS = {f.name for f in fields(JobConfig)}


def load_job_file(path: str | Path) -> dict[str, Any]:
    """A job file's settings, paths made relative to the current folder."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"job file {p}: no such file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"job file {p}: {exc}") from None
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise UsageError(f"job file {p}: unknown setting {unknown[0]!r}")
    for name in ("input", "report"):
        if isinstance(data.get(name), str) and data[name]:
            data[name] = os.path.normpath(p.parent / data[name])
    return data


def build_config(job_file: str | None, overrides: Mapping[str, Any]) -> JobConfig:
    """Job file, then flags (those not None), validated."""
    data: dict[str, Any] = load_job_file(job_file) if job_file else {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return validate(JobConfig(**_coerce(data)))
    except (TypeError, ValueError) as exc:
        raise UsageError(f"bad setting: {exc}") from None


def _coerce(data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    if "rate" in out:
        out["rate"] = str(out["rate"])
        if not out["rate"].strip():  # given, but empty: the default is had by leaving it out
            raise UsageError("--rate '': expected calls per second (25), a share of the quota "
                             "(80%) or 'auto'")  # fmt: skip
    for name in ("exclude", "rows"):
        if name in out:
            if isinstance(out[name], str):
                raise ValueError(f"{name} must be a list, not a string")
            out[name] = tuple(out[name])
    for name in ("columns", "client_metadata"):
        if name in out:
            if not isinstance(out[name], Mapping):
                raise ValueError(f"{name} must be a table of names to strings")
            out[name] = {str(k): str(v) for k, v in out[name].items()}
    return out


def validate(config: JobConfig) -> JobConfig:
    if not config.input:
        raise UsageError("no input file: give INPUT or 'input' in the job file")
    if not config.user_pool_id:
        raise UsageError("no user pool: give --user-pool-id or 'user_pool_id' in the job file")
    check_rate(config.rate)
    if config.rate_algorithm not in ("shared", "measured", "aimd", "cubic", "fixed"):
        raise UsageError("rate_algorithm must be shared, measured, aimd, cubic or fixed")
    if config.max_rate < 0:
        raise UsageError("--max-rate must not be negative")
    if not 1 <= config.workers <= MAX_WORKERS:
        raise UsageError(f"--workers must be 1 to {MAX_WORKERS}")
    if not 1 <= config.max_attempts <= 50:
        raise UsageError("--max-attempts must be 1 to 50")
    if config.max_row_seconds <= 0:
        raise UsageError("max_row_seconds must be positive")
    if min(config.per_user_rate, config.list_rate, config.get_rate) <= 0:
        raise UsageError("per_user_rate, list_rate and get_rate must be positive")
    if config.empty not in ("leave", "delete"):
        raise UsageError("--empty must be 'leave' or 'delete'")
    if config.on_duplicate not in ("invalid", "last"):
        raise UsageError("--on-duplicate must be 'invalid' or 'last'")
    if config.key not in ("username", "email", "phone_number", "sub"):
        raise UsageError("--key must be username, email, phone_number or sub")
    if config.format and config.format not in ("csv", "parquet"):
        raise UsageError("--format must be csv or parquet")
    for name, value in config.client_metadata.items():
        if not name or len(name) > 256 or len(value) > 256:
            raise UsageError("client metadata keys and values must be 1 to 256 characters")
    if config.key != "username" and config.username_column == "username":
        config = replace(config, username_column=config.key)
    return config


def check_rate(text: str) -> None:
    """``N`` (calls/s), ``P%`` (of the enforced quota), ``auto`` or empty; else UsageError."""
    text = text.strip()
    if not text or text.lower() == "auto":
        return
    number = text[:-1].strip() if text.endswith("%") else text
    try:
        value = float(number)
    except ValueError:
        raise UsageError(
            f"--rate {text!r}: expected calls per second (25), a share of the quota (80%) or "
            "'auto'"
        ) from None
    if text.endswith("%"):
        if not 0 < value <= 100:
            raise UsageError(f"--rate {text!r}: a share of the quota is above 0% and at most 100%")
    elif not 0 < value <= 100_000:
        raise UsageError(f"--rate {text!r}: calls per second must be above 0 and at most 100000")


def parse_pairs(pairs: list[str] | None, *, what: str) -> dict[str, str] | None:
    """``["a=b", "c=d"]`` from repeated flags; None when not given."""
    if not pairs:
        return None
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"{what} must be NAME=VALUE, not {pair!r}")
        out[name] = value
    return out
