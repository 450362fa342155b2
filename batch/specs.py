"""Setting values with a grammar of their own, parsed once when a config is validated.

``FailureLimit`` is ``--max-failures`` (N, P%, auto, none; the brake in ``engine/brake.py``
counts against it). ``Shard`` is ``--shard`` (K/N, auto, auto/N; ``inputs/shard.py`` scans a
shard's rows). ``MaxDisable`` is ``--max-disable`` (N, P%; ``plan/leavers.py``). They live
below ``config`` so that validating a config imports nothing above it.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from batch.errors import UsageError

_SPEC = re.compile(r"^\s*(?:(auto|none|off)|(\d+)|(\d+(?:\.\d+)?)\s*%)\s*$", re.IGNORECASE)

#: Rows decided before a percentage is judged on the rows themselves.
SAMPLE = 100
#: The default: more than this many failures and more than ``DEFAULT_PERCENT`` of the rows.
DEFAULT_COUNT = 50
DEFAULT_PERCENT = 10.0



@dataclass(frozen=True, slots=True)
class FailureLimit:
    """How many row failures a run tolerates: a count, a percentage, both (auto) or none."""

    count: int | None = DEFAULT_COUNT
    percent: float | None = DEFAULT_PERCENT

    @classmethod
    def parse(cls, spec: str | int | None) -> FailureLimit:
        """``"auto"`` (or None), ``"none"``, ``"N"`` or ``"P%"``; a bad one is a UsageError."""
        if spec is None:
            return cls()
        match = _SPEC.match(str(spec))
        if match is None:
            raise UsageError(
                f"--max-failures must be a whole number, a percentage (10%), auto or none, "
                f"not {spec!r}"
            )
        word, count, percent = match.groups()
        if word:
            return cls() if word.lower() == "auto" else cls(None, None)
        if count is not None:
            return cls(int(count), None)
        value = float(percent)
        if not 0 <= value <= 100:
            raise UsageError("--max-failures as a percentage must be 0% to 100%")
        return cls(None, value)

    def threshold(self, decided: int) -> float:
        """Failures allowed after ``decided`` rows; one more stops the run."""
        if self.count is None and self.percent is None:
            return math.inf
        limits = []
        if self.count is not None:
            limits.append(float(self.count))
        if self.percent is not None:
            limits.append(self.percent / 100.0 * max(decided, SAMPLE))
        # Both given (auto): the run stops only when failures exceed both.
        return max(limits)

    def describe(self) -> str:
        if self.count is None and self.percent is None:
            return "none"
        if self.count is not None and self.percent is not None:
            return f"max({self.count}, {self.percent:g}%)"
        return str(self.count) if self.count is not None else f"{self.percent:g}%"



MAX_SHARDS = 10_000
_SHARD_SPEC = re.compile(r"^(\d+|auto)(?:/(\d+))?$")
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
        match = _SHARD_SPEC.match(spec.strip().lower())
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
            else None
        if count is not None and size is not None and size != count:
            raise UsageError(f"--shard auto/{count}: AWS_BATCH_JOB_ARRAY_SIZE is {size}")
        count = count if count is not None else size
        if count is None:
            raise UsageError("--shard auto: AWS_BATCH_JOB_ARRAY_SIZE is not set; use auto/N")
        return index, count
    if "JOB_COMPLETION_INDEX" in env:
        if count is None:
            raise UsageError("--shard auto: Kubernetes gives no shard count; use --shard auto/N "
                             "with N = the Job's completions")
        return _integer(env, "JOB_COMPLETION_INDEX"), count
    raise UsageError("--shard auto: no AWS_BATCH_JOB_ARRAY_INDEX or JOB_COMPLETION_INDEX in "
                     "the environment (not an array job?); use --shard K/N")


def _integer(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise UsageError(f"{name}={env[name]!r} is not a number") from None


def shard_of(key: str, count: int) -> int:
    """The shard a user key belongs to: stable across processes, machines and versions."""
    digest = hashlib.blake2b(key.casefold().encode("utf-8", "surrogateescape"), digest_size=8)
    return int.from_bytes(digest.digest(), "big") % count


DEFAULT_MAX_DISABLE = "10%"


@dataclass(frozen=True, slots=True)
class MaxDisable:
    """The most users one run may disable: a count, or a share of the pool's users."""

    text: str
    count: int | None = None
    share: float | None = None

    @classmethod
    def parse(cls, text: str) -> MaxDisable:
        """``N`` (0 or more) or ``P%`` (0 to 100); UsageError otherwise."""
        raw = text.strip()
        number = raw[:-1].strip() if raw.endswith("%") else raw
        try:
            value = float(number) if raw.endswith("%") else int(number)
        except ValueError:
            value = -1
        if raw.endswith("%") and 0 <= value <= 100:
            return cls(raw, share=value / 100.0)
        if not raw.endswith("%") and value >= 0:
            return cls(raw, count=int(value))
        raise UsageError(f"--max-disable {text!r}: expected a number of users (50) or a share "
                         "of the pool's users (10%)")

    def limit(self, pool_users: int) -> int:
        if self.count is not None:
            return self.count
        return math.floor((self.share or 0.0) * pool_users + 1e-9)
