"""A sync row's operations through the one runner: each call on its own quota category's lane
(controller and pacer), the first failing call failing the row, ``created`` for joiners; and
the writer whose create survives a lost answer (over HTTP against the emulator)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from batch.cognito import CognitoGateway, ConnectionSettings
from batch.commands.sync import SyncWriter
from batch.engine.runner import Runner, RunnerSettings
from batch.errors import RowError, ThrottledError
from batch.models import RowResult, Status
from batch.pace.controllers import FixedRate
from batch.pace.retrying import RetryPolicy
from batch.plan.operations import Kind, Operation, SyncUpdate


class Spy(FixedRate):
    """A fixed rate that counts what its lane saw."""

    def __init__(self, rate: float) -> None:
        super().__init__(rate)
        self.successes = self.throttles = 0

    def on_success(self, sent_at: float, now: float) -> None:
        self.successes += 1

    def on_throttle(self, sent_at: float, now: float) -> None:
        self.throttles += 1


class Writer:
    """Records each call; the first create is throttled; u3's group add fails for good."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.throttled = False

    def _record(self, op: str, username: str) -> None:
        with self.lock:
            self.calls.append((op, username))
            if op == "create" and not self.throttled:
                self.throttled = True
                raise ThrottledError("TooManyRequestsException", "Rate exceeded")
        if op == "add" and username == "u3":
            raise RowError("UserNotFoundException", "User does not exist.")

    def create_user(self, pool: str, username: str, attributes: Any, **_: Any) -> None:
        self._record("create", username)

    def add_user_to_group(self, pool: str, username: str, group: str) -> None:
        self._record("add", username)

    def disable_user(self, pool: str, username: str) -> None:
        self._record("disable", username)

    def update_user_attributes(self, pool: str, username: str, attributes: Any,
                               **_: Any) -> None:
        self._record("update", username)


def row(n: int, *kinds: Kind) -> SyncUpdate:
    name = f"u{n}"
    ops = tuple(Operation(k, name, group="g" if "group" in k.value else "") for k in kinds)
    return SyncUpdate(n, name, (), ops=ops)


def test_each_operation_runs_on_its_own_categorys_lane() -> None:
    # GIVEN joiners (create + add to group), a leaver (disable) and a row whose add fails
    writer, update, creation = Writer(), Spy(1000), Spy(1000)
    results: list[RowResult] = []
    runner = Runner(writer, RunnerSettings("p", workers=4,  # type: ignore[arg-type]
                                           retry=RetryPolicy(base_backoff=0.001)),
                    controller=update, controllers={"UserCreation": creation},
                    on_result=results.append)
    # WHEN they are applied
    runner.run([row(1, Kind.CREATE, Kind.ADD_TO_GROUP), row(2, Kind.CREATE, Kind.ADD_TO_GROUP),
                row(3, Kind.DISABLE, Kind.ADD_TO_GROUP, Kind.ENABLE), row(4, Kind.DISABLE)])
    # THEN creates paced and controlled on UserCreation's lane, the rest on UserUpdate's
    assert runner.lanes["UserCreation"].calls == 3  # two creates, one throttled and retried
    assert (creation.successes, creation.throttles) == (2, 1)
    assert runner.lanes["UserUpdate"].calls == 5  # two adds, two disables, u3's failed add
    assert (update.successes, update.throttles) == (4, 0)
    by_row = {r.row: r for r in results}
    assert by_row[1].status is Status.CREATED and by_row[2].status is Status.CREATED
    assert by_row[4].status is Status.UPDATED
    # ... and the first failing call fails its row with its code; the calls after it are not sent
    assert (by_row[3].status, by_row[3].error_code) == (Status.FAILED, "UserNotFoundException")
    assert ("enable", "u3") not in writer.calls


@pytest.fixture
def gateway(clean_emulator: Any) -> CognitoGateway:
    clean_emulator.configure(quotas={"UserCreation": 1000, "UserRead": 1000})
    return CognitoGateway(ConnectionSettings(endpoint_url=clean_emulator.endpoint_url,
                                             region="us-east-1"))


def test_a_create_sent_again_is_not_a_failure(gateway: CognitoGateway, make_pool: Any) -> None:
    # GIVEN a pool, and a create whose answer was lost (sent, then sent again by the retry)
    pool = make_pool()
    writer = SyncWriter(gateway, invite=False)
    attrs = [("custom:department", "eng")]
    writer.create_user(pool, "joiner", attrs)
    # WHEN it is sent again: Cognito answers UsernameExistsException; THEN that is success
    writer.create_user(pool, "joiner", attrs)
    # ... as it is in a resumed run for a user whose attributes are already the row's
    SyncWriter(gateway, invite=False).create_user(pool, "joiner", attrs)


def test_a_create_for_someone_elses_user_fails(gateway: CognitoGateway, make_pool: Any) -> None:
    # GIVEN a user this run did not create, holding other values
    pool = make_pool(users=[{"username": "taken", "custom:department": "hr"}])
    writer = SyncWriter(gateway, invite=False)
    # WHEN the run would create it: THEN UsernameExistsException fails the row
    with pytest.raises(RowError) as caught:
        writer.create_user(pool, "taken", [("custom:department", "eng")])
    assert caught.value.code == "UsernameExistsException"
    # ... unless an earlier attempt of this run's before-images say it created that user
    SyncWriter(gateway, invite=False, created=frozenset({"taken"})).create_user(
        pool, "taken", [("custom:department", "eng")])
