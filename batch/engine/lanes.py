"""One lane per Cognito quota category: a controller and the pacer that follows it.

Cognito pools its request quotas per category ("Quotas in Amazon Cognito"): AdminCreateUser
draws from UserCreation, attribute writes, disable/enable and group changes from UserUpdate.
A sync paces each category on its own lane, so a run with creates, updates and group changes
takes about the time of its busiest category, not the sum, and backs off in one category (a
live application throttled on UserUpdate) without slowing another.

``send`` is the dispatch from an operation's kind to its gateway call: the seam
``engine.work`` names, kept out of the runner so that it stays about pacing and retries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from batch.pace.controllers import RateController
from batch.pace.pacer import Clock, Pacer
from batch.plan.operations import CATEGORY, Kind, Operation

#: The category of today's two attribute calls ("update" and "delete").
UPDATE_CATEGORY = "UserUpdate"


@dataclass(slots=True)
class Lane:
    """A category's controller and pacer; ``calls`` made on it (the window counts busy lanes)."""

    controller: RateController
    pacer: Pacer
    group: int = 1
    calls: int = 0

    @classmethod
    def of(cls, controller: RateController, clock: Clock) -> Lane:
        group = int(getattr(controller, "group", 1))
        return cls(controller, Pacer(controller.rate, group=group, clock=clock), group)

    def follow(self) -> None:
        """The pacer takes the controller's rate and group (a switch to single calls, say)."""
        self.group = int(getattr(self.controller, "group", 1))
        self.pacer.set_rate(self.controller.rate, group=self.group)


def category_of(kind: str) -> str:
    """The quota category of a call: ``update``/``delete`` (attributes) or a ``Kind`` value."""
    if kind in ("update", "delete"):
        return UPDATE_CATEGORY
    return CATEGORY[Kind(kind)]


def send(
    writer: Any, pool: str, op: Operation, client_metadata: Mapping[str, str] | None
) -> None:
    """The one gateway call of ``op`` (not UPDATE: the runner sends that as today's pair)."""
    name = op.username
    if op.kind is Kind.CREATE:
        attributes = op.update.attributes if op.update is not None else ()
        writer.create_user(pool, name, attributes, client_metadata=client_metadata)
    elif op.kind is Kind.DISABLE:
        writer.disable_user(pool, name)
    elif op.kind is Kind.ENABLE:
        writer.enable_user(pool, name)
    elif op.kind is Kind.ADD_TO_GROUP:
        writer.add_user_to_group(pool, name, op.group)
    elif op.kind is Kind.REMOVE_FROM_GROUP:
        writer.remove_user_from_group(pool, name, op.group)
    elif op.kind is Kind.DELETE_USER:
        writer.delete_user(pool, name)
    else:  # pragma: no cover - UPDATE goes through the runner's attribute pair
        raise ValueError(f"no single call for {op.kind}")
