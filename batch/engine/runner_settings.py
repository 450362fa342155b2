"""What a ``Runner`` is given and what it counts: the calls a row needs (``Writer``), its
settings, and its live counters. Apart from ``runner.py`` so that file holds the pool alone."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from batch.engine.breaker import DEFAULT_GIVE_UP_AFTER
from batch.pace.retrying import RetryPolicy


class Writer:
    """The calls a row needs: a gateway, or a fake in tests."""

    def update_user_attributes(
        self,
        user_pool_id: str,
        username: str,
        attributes: list[tuple[str, str]] | tuple[tuple[str, str], ...],
        *,
        client_metadata: Mapping[str, str] | None = None,
    ) -> None:  # pragma: no cover - protocol
        raise NotImplementedError

    def delete_user_attributes(
        self, user_pool_id: str, username: str, names: list[str] | tuple[str, ...]
    ) -> None:  # pragma: no cover - protocol
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class RunnerSettings:
    user_pool_id: str
    workers: int = 8
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    client_metadata: Mapping[str, str] = field(default_factory=dict)
    per_user_rate: float = 10.0
    give_up_after: float = DEFAULT_GIVE_UP_AFTER  # no answer this long: stop (0: never)
    #: A call's seconds measured before the loop (the first rows' reads at the start): the
    #: window is sized from it until the first answer, as from the wait so far (0: none).
    latency_hint: float = 0.0


@dataclass(slots=True)
class Stats:
    """Live counters (written under the runner's lock)."""

    calls: int = 0
    throttles: int = 0
    faults: int = 0
    in_flight: int = 0
    latency: float = 0.05  # EWMA of a call's seconds
    resolve: float = 0.0  # EWMA of a row's seconds in ``resolve`` (reads, before-images)
