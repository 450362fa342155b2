"""The job definition: a TOML file under jobs/ plus command-line flags, validated once.

Flags override the job file. Paths in a job file are relative to the job file's folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from batch.errors import UsageError
from batch.hints import expected_type, fits, is_mapping, toml_type
from batch.specs import DEFAULT_MAX_DISABLE, FailureLimit, MaxDisable, Shard

log = logging.getLogger("cognito-batch")

DEFAULT_RATE = 25.0  # Cognito's default UserUpdate quota, requests/s, account-wide
MAX_WORKERS = 1024
#: A bound, not a target: threads start only when the rate needs them. Sized for a raised
#: quota at slow answers: 150/s at 1 s, with a 1 s read a row, needs ~450 (Little's law).
DEFAULT_WORKERS = 512


@dataclass(frozen=True, slots=True)
class JobConfig:
    """Everything one run needs. Field names match the job file's keys."""

    input: str = ""
    user_pool_id: str = ""
    report: str = ""
    html: str = ""  # also write the run's one-file HTML report here (``html_report``)
    format: str = ""
    delimiter: str = ","
    username_column: str = ""  # empty: the key's own name ("username", "email", ...)
    key: str = "username"
    columns: Mapping[str, str] = field(default_factory=dict)
    exclude: tuple[str, ...] = ()
    empty: str = "leave"
    on_duplicate: str = "invalid"
    rate: str = ""  # calls/s, "P%" of the enforced quota, "auto"; empty: polite (quota.py)
    max_rate: float = 0.0  # with rate = "auto": the ceiling (0: none)
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
    give_up_after: float = 60.0  # seconds without a successful call while transport fails; 0: never
    log_format: str = "text"  # text, or json: one JSON object per stderr line (batch.view.logs)
    shard: str = ""  # K/N, auto or auto/N (batch.inputs.shard); validated to K/N
    # Record before-images beside the report (``undo.py``). None: on for a real pool, off for
    # the project's emulator (its runs are tests and benchmarks); true/false: as said.
    undo: bool | None = None
    max_failures: str = "auto"  # the brake: N, P%, auto or none (``brake.py``)
    # A report in S3 (``checkpoint.py``): journal segments every N seconds, the lease's expiry.
    checkpoint_seconds: float = 5.0
    lease_seconds: float = 30.0
    spool: str = ""  # set by the job, not by a user: the local folder an S3 report is made in
    # The whole sync (issue 21; docs/sync.md): joiners, leavers, groups, aliases.
    create_missing: bool = False  # create a row's user when it does not exist (AdminCreateUser)
    invite: bool = False  # with create_missing: let Cognito send its invitation (else SUPPRESS)
    disable_missing: bool = False  # disable pool users the input (the whole population) lacks
    max_disable: str = DEFAULT_MAX_DISABLE  # N or P% of the pool's users; above it: refuse
    manage_groups: tuple[str, ...] = ()  # the groups a run may change; empty: those named
    alias_check: bool = True  # AliasConflict before writing an alias; always on with mark_verified
    # ("emf",) or ("prometheus-textfile", PATH): metrics at the end of the run (view/metrics.py)
    metrics: tuple[str, ...] = ()
    # Incremental runs (issue 22; docs/incremental.md): send only what changed since the state
    # the last finished run left beside the report; verify a sample of the rest against drift.
    incremental: bool = False
    verify: str = ""  # N or P% of the unchanged rows, read and fixed; empty: none

    # -- derived -----------------------------------------------------------------------------

    @property
    def auto_rate(self) -> bool:
        return self.rate.strip().lower() == "auto"

    @property
    def polite_rate(self) -> bool:
        """No --rate: take the part of the quota others leave, politely (pace/controllers.py)."""
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
        if self.spool:  # an S3 report: the run works on a local copy in its spool folder
            return Path(self.spool) / (self.report.rstrip("/").rpartition("/")[2] or "report.csv")
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
        data = {k: _jsonable(getattr(self, k)) for k in keys}
        if self.shard:  # only when set: journals written before shards existed still resume
            data["shard"] = self.shard
        for name in _SYNC_FINGERPRINT:  # likewise: only when changed from the default
            if getattr(self, name) != getattr(_DEFAULTS, name):
                data[name] = _jsonable(getattr(self, name))
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def public(self) -> dict[str, Any]:
        """The settings as JSON, for the summary. Client metadata is left out: its values go
        to Lambda triggers and may be anything (the summary keeps only its keys, beside)."""
        data = {k: _jsonable(v) for k, v in asdict(self).items()}
        data.pop("rows", None)
        data.pop("client_metadata", None)
        data.pop("spool", None)
        # Where metrics go is the caller's to say: a retry replays the summary's settings, and
        # a file anyone can edit must not choose a path the tool writes (nor print to stdout).
        data.pop("metrics", None)
        return data


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(sorted(value.items()))
    if isinstance(value, tuple):
        return list(value)
    return value


_FIELDS = {f.name for f in fields(JobConfig)}
_SYNC_FINGERPRINT = ("create_missing", "invite", "disable_missing", "manage_groups",
                     "alias_check", "incremental", "verify")


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
    for name in ("input", "report", "html"):
        if isinstance(data.get(name), str) and data[name] and not _is_s3(data[name]):
            data[name] = os.path.normpath(p.parent / data[name])
    metrics = data.get("metrics")
    if isinstance(metrics, list) and len(metrics) == 2 and metrics[0] == "prometheus-textfile":
        if isinstance(metrics[1], str) and metrics[1] and not _is_s3(metrics[1]):
            data["metrics"] = [metrics[0], os.path.normpath(p.parent / metrics[1])]
    return data


def _is_s3(text: str) -> bool:
    return text[:5].lower() == "s3://"


def build_config(job_file: str | None, overrides: Mapping[str, Any]) -> JobConfig:
    """Job file, then flags (those not None), type-checked, validated."""
    data: dict[str, Any] = load_job_file(job_file) if job_file else {}
    from_file = set(data)
    flags = {k: v for k, v in overrides.items() if v is not None}
    data.update(flags)
    for name, value in data.items():
        where = f"job file {job_file}: " if name in from_file and name not in flags else ""
        check_type(name, value, where=where)
    try:
        return validate(JobConfig(**_coerce(data)))
    except (TypeError, ValueError) as exc:
        raise UsageError(f"bad setting: {exc}") from None


# -- types -----------------------------------------------------------------------------------
# Checked from JobConfig's own annotations, so a field added later is checked too. TOML has
# real booleans, integers and floats: a string "false" is a mistake to report, never a value
# to interpret (bool("false") is True).

_HINTS: dict[str, Any] = typing.get_type_hints(JobConfig)
#: Fields that take more than their annotation says (``rate``: a number, or a word like auto).
_ALSO_ACCEPTED: dict[str, tuple[type, ...]] = {"rate": (int, float), "max_failures": (int,)}
def check_type(name: str, value: object, *, where: str = "") -> None:
    """One line naming the setting, the type it has and the type it needs; unknown names pass
    (``JobConfig`` itself refuses them)."""
    hint = _HINTS.get(name)
    if hint is None or fits(hint, value):
        return
    extra = _ALSO_ACCEPTED.get(name, ())
    if extra and isinstance(value, extra) and not isinstance(value, bool):
        return
    expected = expected_type(hint) + (" or a number" if extra else "")
    got = toml_type(value)
    items = list(value.values()) if isinstance(value, Mapping) else value
    container = typing.get_origin(hint) is tuple or is_mapping(hint)
    if container and isinstance(items, list | tuple):
        args = typing.get_args(hint)
        inner = args[0] if typing.get_origin(hint) is tuple else args[-1]
        wrong = next((v for v in items if not fits(inner, v)), None)
        if wrong is not None:
            got += f" holding {toml_type(wrong)}"
    raise UsageError(f"{where}setting {name!r} must be {expected}, not {got}")


def replayable(settings: Mapping[str, Any]) -> dict[str, Any]:
    """A run's recorded settings (``public()``) as settings for a new config (retry, undo):
    the polite default, recorded as an empty rate, is had by leaving the rate out (an empty
    rate given is refused as a mistake, below)."""
    out = dict(settings)
    out.pop("rate_algorithm", None)  # a retired hidden setting, in summaries written before
    if isinstance(out.get("rate"), str) and not out["rate"].strip():
        del out["rate"]
    return out


def _coerce(data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    for name in ("rate", "max_failures"):  # a number or a string in a job file
        if name in out and isinstance(out[name], int | float) and not isinstance(out[name], bool):
            out[name] = str(out[name])
    if isinstance(out.get("rate"), str) and not out["rate"].strip():
        # given, but empty: the default is had by leaving it out
        raise UsageError("--rate '': expected calls per second (25), a share of the quota "
                         "(80%) or 'auto'")
    for name, hint in _HINTS.items():
        if name not in out:
            continue
        if typing.get_origin(hint) is tuple:
            out[name] = tuple(out[name])
        elif hint is float:
            out[name] = float(out[name])
        elif is_mapping(hint):
            out[name] = dict(out[name])
    return out


def validate(config: JobConfig) -> JobConfig:
    for f in fields(config):
        check_type(f.name, getattr(config, f.name))
    if not config.input:
        raise UsageError("no input file: give INPUT or 'input' in the job file")
    if not config.user_pool_id:
        raise UsageError("no user pool: give --user-pool-id or 'user_pool_id' in the job file")
    check_rate(config.rate)
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
    if config.log_format not in ("text", "json"):
        raise UsageError("--log-format must be text or json")
    if config.format and config.format not in ("csv", "parquet"):
        raise UsageError("--format must be csv or parquet")
    for name, value in config.client_metadata.items():
        if not name or len(name) > 256 or len(value) > 256:
            raise UsageError("client metadata keys and values must be 1 to 256 characters")
    if config.spool:
        raise UsageError("'spool' is not a setting (the run chooses its own folder)")
    if config.checkpoint_seconds <= 0 or config.lease_seconds < 2 * config.checkpoint_seconds:
        raise UsageError("--checkpoint-seconds must be positive and --lease-seconds at least "
                         "twice as long")
    if not config.lease_seconds <= 3600:  # lease.MAX_TTL_SECONDS: a longer one reads as damaged
        raise UsageError("--lease-seconds must be at most 3600")
    if config.give_up_after < 0:
        raise UsageError("--give-up-after must not be negative (0: never give up)")
    if config.max_rate and not config.auto_rate:
        log.warning("--max-rate applies only with --rate auto; the fixed --rate %s is used",
                    config.rate)
    FailureLimit.parse(config.max_failures)
    check_sync(config)
    check_metrics(config.metrics)
    check_incremental(config)
    if not config.username_column:  # only a default follows the key; a given column stays
        config = replace(config, username_column=config.key)
    if config.shard:
        config = share_of(config)
    return config


def verify_sample(spec: str, unchanged: int) -> int:
    """``--verify N|P%``: how many of the ``unchanged`` rows to read back (UsageError else)."""
    raw = spec.strip()
    try:
        value = float(raw[:-1]) if raw.endswith("%") else int(raw)
    except ValueError:
        value = -1
    if value < 0 or (raw.endswith("%") and value > 100):
        raise UsageError(f"--verify {spec!r}: expected a number of users (1000) or a share of "
                         "the unchanged ones (1%)")
    count = round(unchanged * value / 100) if raw.endswith("%") else int(value)
    return min(unchanged, count)


def check_incremental(config: JobConfig) -> None:
    if config.verify:
        verify_sample(config.verify, 0)
        if not config.incremental:
            raise UsageError("--verify needs --incremental (it samples the rows the state "
                             "says are unchanged)")
    if config.incremental and config.rows:
        raise UsageError("--incremental is for a run over the whole input, not a retry")


def check_sync(config: JobConfig) -> None:
    """The sync's flags (issue 21), together: each one line, exit 2, nothing written."""
    if config.invite and not config.create_missing:
        raise UsageError("--invite needs --create-missing (it is the new users' invitation)")
    if config.create_missing and config.key != "username":
        raise UsageError("--create-missing needs --key username: a new user's username comes "
                         "from the key column")
    MaxDisable.parse(config.max_disable)
    if config.disable_missing and (config.shard or config.rows):
        what = "--shard" if config.shard else "retry"
        raise UsageError(f"--disable-missing needs the whole population in one input, not "
                         f"{what}: every user another part holds would be disabled")
    if config.max_disable != DEFAULT_MAX_DISABLE and not config.disable_missing:
        log.warning("--max-disable applies only with --disable-missing")
    for name in config.manage_groups:
        if not name or len(name) > 128 or not name.isprintable() or name != name.strip():
            raise UsageError(f"--manage-groups: {name!r} is not a group name")
    if config.mark_verified and not config.alias_check:
        raise UsageError("--no-alias-check cannot go with --mark-verified: marking a value "
                         "verified would move an alias from its user (boto/boto3#3213)")


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


def check_metrics(spec: tuple[str, ...]) -> None:
    """``()``, ``("emf",)`` or ``("prometheus-textfile", PATH)`` with a local PATH."""
    if not spec or spec == ("emf",):
        return
    if len(spec) == 2 and spec[0] == "prometheus-textfile" and spec[1].strip():
        if _is_s3(spec[1]):
            raise UsageError("--metrics prometheus-textfile: PATH is a local file (the "
                             "node_exporter's textfile folder), not s3://")
        return
    raise UsageError("--metrics must be 'emf' or 'prometheus-textfile PATH'")


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


def share_of(config: JobConfig) -> JobConfig:
    """A shard's config: ``auto`` resolved, the report named for the shard, every rate divided
    by N. Applied once, when the config is validated."""
    if not config.shard:
        return config
    shard = Shard.parse(config.shard)
    n = shard.count
    # A rate in calls/s is divided here; a share of the quota (the polite default, auto,
    # P%) is divided where the quota is known (rate_plan.py).
    relative = config.auto_rate or config.polite_rate or config.rate_share is not None
    rate = config.rate if relative else repr(float(config.rate) / n)
    if config.report[:5].lower() == "s3://":  # a URI: Path would fold its "//"
        folder, _, name = config.report.rpartition("/")
        report = f"{folder}/{shard.path(Path(name)).name}"
    else:
        report = str(shard.path(config.report_path()))
    return replace(config, shard=str(shard), report=report, rate=rate,
                   max_rate=config.max_rate / n, list_rate=config.list_rate / n,
                   get_rate=config.get_rate / n)


_DEFAULTS = JobConfig()
