"""Shards for array jobs: ``--shard K/N`` runs the rows whose user key hashes to shard K.

    --shard 0/3, --shard 1/3, --shard 2/3      three containers, one input, disjoint rows
    --shard auto                                K and N from AWS_BATCH_JOB_ARRAY_INDEX / _SIZE
    --shard auto/3                              K from AWS Batch or JOB_COMPLETION_INDEX (k8s)

K counts from 0, as both schedulers' indexes do. A row belongs to shard
``blake2b(casefold(key)) mod N``: a stable hash (never Python's ``hash()``, which is salted per
process), so every container agrees, and one user never lands in two shards. The key is
casefolded because Cognito compares usernames and email aliases case-insensitively by default:
two spellings of one user stay in one shard (in a case-sensitive pool this only groups some
distinct users together, which is harmless).

Each shard paces at its share of the rates (``rate / N``, and ``max_rate``, ``list_rate``,
``get_rate``): Cognito's quotas are per account and region, so **shards add CPU, not quota**.
Each writes its own report, summary and journal, named with ``.shard-K-of-N`` before the
report's suffix (``out.csv`` -> ``out.shard-1-of-3.csv``), and rows of other shards never
appear in it; ``cognito-batch merge out.csv`` assembles the one report and summary
(``batch.merge``). A shard that is retried (same command, same K) resumes from its journal.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from batch.errors import UsageError
from batch.rowset import RowSet
from batch.scan import KeyScan, scan_column

if TYPE_CHECKING:
    from batch.config import JobConfig

MAX_SHARDS = 10_000
_SPEC = re.compile(r"^(\d+|auto)(?:/(\d+))?$")
SHARD_NAME = re.compile(r"\.shard-(\d+)-of-(\d+)$")


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``index`` of ``count`` (0 <= index < count)."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, key: str) -> bool:
        return shard_of(key, self.count) == self.index

    def path(self, report: Path) -> Path:
        """``out.csv`` -> ``out.shard-1-of-3.csv``."""
        return report.with_name(f"{report.stem}.shard-{self.index}-of-{self.count}{report.suffix}")

    @classmethod
    def parse(cls, spec: str, environ: Mapping[str, str] | None = None) -> Shard:
        """``K/N``, ``auto`` or ``auto/N``; ``auto`` reads the array index from ``environ``."""
        env = os.environ if environ is None else environ
        match = _SPEC.match(spec.strip().lower())
        if match is None:
            raise UsageError(f"--shard must be K/N, auto or auto/N, not {spec!r}")
        index_text, count_text = match.groups()
        count = int(count_text) if count_text else None
        if index_text == "auto":
            index, count = _from_environment(env, count)
        else:
            index = int(index_text)
            if count is None:
                raise UsageError(f"--shard {spec}: give the number of shards too (K/N)")
        if not 1 <= count <= MAX_SHARDS:
            raise UsageError(f"--shard: the number of shards must be 1 to {MAX_SHARDS}")
        if not 0 <= index < count:
            raise UsageError(f"--shard {index}/{count}: K counts from 0 and must be below N")
        return cls(index, count)


def _from_environment(env: Mapping[str, str], count: int | None) -> tuple[int, int]:
    if "AWS_BATCH_JOB_ARRAY_INDEX" in env:
        index = _integer(env, "AWS_BATCH_JOB_ARRAY_INDEX")
        size = _integer(env, "AWS_BATCH_JOB_ARRAY_SIZE") if "AWS_BATCH_JOB_ARRAY_SIZE" in env \
            else None  # fmt: skip
        if count is not None and size is not None and size != count:
            raise UsageError(f"--shard auto/{count}: AWS_BATCH_JOB_ARRAY_SIZE is {size}")
        count = count if count is not None else size
        if count is None:
            raise UsageError("--shard auto: AWS_BATCH_JOB_ARRAY_SIZE is not set; use auto/N")
        return index, count
    if "JOB_COMPLETION_INDEX" in env:
        if count is None:
            raise UsageError("--shard auto: Kubernetes gives no shard count; use --shard auto/N "
                             "with N = the Job's completions")  # fmt: skip
        return _integer(env, "JOB_COMPLETION_INDEX"), count
    raise UsageError("--shard auto: no AWS_BATCH_JOB_ARRAY_INDEX or JOB_COMPLETION_INDEX in "
                     "the environment (not an array job?); use --shard K/N")  # fmt: skip


def _integer(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise UsageError(f"{name}={env[name]!r} is not a number") from None


def shard_of(key: str, count: int) -> int:
    """The shard a user key belongs to: stable across processes, machines and versions."""
    digest = hashlib.blake2b(key.casefold().encode("utf-8", "surrogateescape"), digest_size=8)
    return int.from_bytes(digest.digest(), "big") % count


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
                   get_rate=config.get_rate / n)  # fmt: skip


def scan_shard(values: Callable[[], Iterable[str]], shard: Shard | None) -> KeyScan:
    """The key scan over this shard's rows only; row numbers stay the input's."""
    if shard is None:
        return scan_column(values)
    owned = [0]
    foreign = RowSet()

    def masked() -> Iterator[str]:
        owned[0] = 0
        for row, value in enumerate(values(), start=1):
            if shard.owns(value):
                owned[0] += 1
                yield value
            else:
                foreign.add(row)
                yield ""  # keeps its row number, joins no duplicate, counts as no key

    scan = scan_column(masked)
    return replace(scan, rows=owned[0], input_rows=scan.rows, foreign=foreign)

