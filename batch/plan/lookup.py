"""Who the input's users are now: for ``--skip-unchanged`` and for keys other than username.

Two ways to read, chosen by cost (each read category has its own Cognito quota, separate from
the update quota, so reads never slow the writes down):

- ``PoolSnapshot``: page the whole pool with ListUsers (60 users a call, UserList quota
  ~30/s, so ~1,800 users/s) and keep only the input's users, in a SQLite file on disk: memory
  stays flat for a pool of millions.
- ``LiveLookup``: one read per row, as the row is applied: AdminGetUser (UserRead quota ~120/s)
  for usernames, a ``ListUsers`` filter (``email = "..."``) for other keys.

Paging the pool costs P/60 list calls; per-row reads cost N get (or list) calls. ``choose``
takes the cheaper in seconds at each quota: with the defaults a snapshot wins once the input
holds more than ~1/15 of the pool (keyed by username) or ~1/60 (keyed by email).

The snapshot holds users' current values, so it is private: ``0600`` (``mkstemp``) at an
unpredictable name beside the report (``REPORT.snapshot-XXXX.sqlite3``) in a folder created
``0700``, removed when the run ends. A run that could not remove it (a second Ctrl-C, ``kill
-9``) leaves it behind; the next run on the same report removes it as it starts (it holds the
report's lock, so no live run can be using it).
"""

from __future__ import annotations

import functools
import json
import os
import re
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from batch.cognito import USER_STATE
from batch.errors import CognitoError, FatalError, RowError, ThrottledError
from batch.inputs.scan import KeyScan
from batch.models import RowResult, Status, UserUpdate
from batch.pace.pacer import Pacer, Waiter
from batch.pace.retrying import Cancelled, Retrier
from batch.plan.mapping import with_verified_flags
from batch.plan.segments import filter_for
from batch.store.files import private_dir

T = TypeVar("T")
LIST_PAGE = 60


class Reads(Protocol):
    """The gateway calls a snapshot needs (``CognitoGateway`` has them)."""

    def get_user(self, user_pool_id: str, username: str) -> dict[str, str]: ...

    def list_users_page(
        self,
        user_pool_id: str,
        *,
        pagination_token: str | None = None,
        filter_expression: str | None = None,
        limit: int = 60,
    ) -> tuple[list[dict[str, str]], str | None]: ...


class Lookup(Protocol):
    reads: int  # read calls made so far, for the summary

    def find(self, key: str) -> list[dict[str, str]]:
        """The users whose key attribute equals ``key`` (attributes, ``username`` included)."""
        ...

    def close(self) -> None: ...


def key_of(user: dict[str, str], key: str) -> str:
    return user.get(key, "")


def choose(
    *, input_rows: int, pool_users: int | None, key: str, list_rate: float, get_rate: float
) -> str:
    """``"snapshot"`` or ``"live"``, whichever reads in fewer seconds."""
    if pool_users is None:
        return "snapshot"
    snapshot_s = (pool_users / LIST_PAGE + 1) / list_rate
    live_s = input_rows / (get_rate if key == "username" else list_rate)
    return "snapshot" if snapshot_s <= live_s else "live"


class PacedCall:
    """A read call, paced by its own quota's pacer and retried by the shared policy."""

    def __init__(self, pacer: Pacer, retrier: Retrier, wait: Waiter) -> None:
        self.pacer, self.retrier, self.wait = pacer, retrier, wait

    def __call__(self, fn: Callable[[], T]) -> T:
        box: list[T] = []

        def attempt() -> None:
            # A slot that needs no wait never looks at the stop: ask it (``wait(0)``) too, or
            # a fast read quota pages the whole pool after a signal.
            if not self.pacer.acquire(self.wait) or self.wait(0):
                raise Cancelled("job stopping")
            box.append(fn())

        outcome = self.retrier.run(attempt)
        if outcome.error is not None:
            raise outcome.error
        return box[-1]


def snapshot_prefix(report: Path) -> str:
    return f"{report.name}.snapshot-"


SNAPSHOT_SUFFIX = ".sqlite3"
_RANDOM = re.compile(r"^[a-z0-9_]{8}$")  # tempfile's names: 8 of these characters


def remove_stale_snapshots(report: Path) -> list[Path]:
    """Remove snapshots an earlier run on ``report`` left behind; call with its lock held."""
    prefix, removed = snapshot_prefix(report), []
    try:
        names = os.listdir(report.parent)
    except FileNotFoundError:
        return []
    for name in names:
        # Exactly mkstemp's 8 random characters between: never another report's snapshot
        # (``out.csv.snapshot-x.csv``'s starts with ``out.csv.snapshot-`` too).
        middle = name[len(prefix) : -len(SNAPSHOT_SUFFIX)]
        if name.startswith(prefix) and name.endswith(SNAPSHOT_SUFFIX) and _RANDOM.match(middle):
            path = report.parent / name
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


#: Codes that mean "this identity may not make this call": named as the missing permission.
DENIED = frozenset({"AccessDeniedException", "NotAuthorizedException", "AccessDenied",
                    "ForbiddenException"})
#: A name no real user is expected to have: the permission check reads it.
PROBE_USERNAME = "cognito-batch-permission-check"


def refused(exc: FatalError, action: str) -> FatalError:
    """A read refused for good, as one line naming the permission it needs and the way out."""
    if exc.code not in DENIED:
        return exc
    return FatalError(
        exc.code,
        f"cognito-idp:{action} is refused ({exc.message or exc.code}): this run reads each "
        "user before writing it (before-images, on by default for a real pool; "
        f"--skip-unchanged; --key); allow cognito-idp:{action} on the pool, or pass --no-undo "
        "without --skip-unchanged or --key",
        operation=exc.operation, status=exc.status,
    )


class PoolSnapshot:
    """The input's users, read by paging the pool, held in SQLite on disk."""

    def __init__(
        self, directory: Path | None = None, *, prefix: str = "cognito-batch-snapshot-",
        indexed: bool = False,
    ) -> None:
        """``indexed``: the key's index made now, for a snapshot read while it fills."""
        if directory is not None:
            private_dir(directory)
        # mkstemp: created 0600 with O_EXCL at a random name, so nothing planted is followed.
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=SNAPSHOT_SUFFIX, dir=directory)
        os.close(fd)
        self.path = Path(name)
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE users (key TEXT, attrs TEXT)")
        if indexed:
            self._db.execute("CREATE INDEX users_key ON users(key)")
        self._lock = threading.Lock()
        self.reads = 0  # ListUsers pages read
        self.kept = 0
        self.covers_all = True  # False when filled by segments: a key not found may exist

    def fill(
        self,
        gateway: Reads,
        user_pool_id: str,
        *,
        key: str,
        wanted: KeyScan,
        attributes: Iterable[str],
        paced: PacedCall,
        prefixes: Sequence[str] = (),
        lanes: int = 32,
    ) -> None:
        """Page the pool (or, with ``prefixes``, each ``username ^= prefix`` segment, up to
        ``lanes`` side by side, in order: ``plan.segments``) and keep the input's users."""
        keep = set(attributes) | {"username", key, "email_verified", "phone_number_verified",
                                  *USER_STATE.values()}  # the sync's enabled, undo's dates
        self.covers_all = not prefixes
        if prefixes:
            self._fill_segments(gateway, user_pool_id, key, wanted, keep, paced, prefixes,
                                lanes)
        else:
            self._page(gateway, user_pool_id, key, wanted, keep, paced, None)
        with self._lock:
            self._db.execute("CREATE INDEX IF NOT EXISTS users_key ON users(key)")
            self._db.commit()

    def _page(self, gateway: Reads, user_pool_id: str, key: str, wanted: KeyScan,
              keep: set[str], paced: PacedCall, expression: str | None,
              halt: threading.Event | None = None) -> None:
        """Every page of one listing (the pool, or one segment's filter)."""
        token: str | None = None
        while halt is None or not halt.is_set():
            try:
                users, token = paced(functools.partial(gateway.list_users_page, user_pool_id,
                                                       pagination_token=token,
                                                       filter_expression=expression))
            except FatalError as exc:  # before the first write: the job stops here
                raise refused(exc, "ListUsers") from None
            rows = []
            for user in users:
                k = key_of(user, key)
                if k and k in wanted:
                    rows.append((k, json.dumps({n: v for n, v in user.items() if n in keep})))
            with self._lock:
                self.reads += 1
                self._db.executemany("INSERT INTO users VALUES (?, ?)", rows)
                self.kept += len(rows)
            if not token:
                break

    def _fill_segments(self, gateway: Reads, user_pool_id: str, key: str, wanted: KeyScan,
                       keep: set[str], paced: PacedCall, prefixes: Sequence[str],
                       lanes: int) -> None:
        """The segments in order, ``lanes`` at a time; the first error stops the others and
        is raised once they have ended."""
        todo = iter(prefixes)
        take = threading.Lock()
        halt = threading.Event()
        errors: list[BaseException] = []

        def lane() -> None:
            while not halt.is_set():
                with take:
                    prefix = next(todo, None)
                if prefix is None:
                    return
                try:
                    self._page(gateway, user_pool_id, key, wanted, keep, paced,
                               filter_for(prefix), halt)
                except BaseException as exc:  # noqa: BLE001 - raised below, in the caller
                    errors.append(exc)
                    halt.set()

        threads = [threading.Thread(target=lane, daemon=True, name=f"cognito-batch-list_{i}")
                   for i in range(max(1, min(lanes, len(prefixes))))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]

    def find(self, key: str) -> list[dict[str, str]]:
        with self._lock:
            rows = self._db.execute("SELECT attrs FROM users WHERE key = ?", (key,)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self.path.unlink(missing_ok=True)


class LiveLookup:
    """One read per row, at the read quota. Made before the first write, it reads once (a
    name no user has) so that a pool or identity refusing the read stops the job there, in
    one line naming the permission, instead of failing every row."""

    def __init__(self, gateway: Reads, user_pool_id: str, *, key: str, paced: PacedCall,
                 check: bool = True,
                 known: Mapping[str, Future[list[dict[str, str]]]] | None = None) -> None:
        """``check``: False when the caller checks later (``check()``), before its first
        write, with other reads under way meanwhile. ``known``: answers read already (the
        first rows' users, read from the start on), each handed out once, then read again; one
        that failed is read again."""
        self.gateway, self.pool, self.key, self.paced = gateway, user_pool_id, key, paced
        self.reads = 0
        self._lock = threading.Lock()
        self._known = dict(known or {})
        if check:
            self.check()

    def check(self) -> None:
        """The permission check: FatalError (permission named) when the read is refused."""
        action = "AdminGetUser" if self.key == "username" else "ListUsers"
        self.reads += 1  # a read like the others: the summary's read_calls counts it
        try:
            self._read(PROBE_USERNAME if self.key == "username" else "")
        except FatalError as exc:
            raise refused(exc, action) from None
        except (CognitoError, Cancelled):
            pass  # throttled or unreachable: the rows' own reads retry and report it

    def find(self, key: str) -> list[dict[str, str]]:
        with self._lock:
            known = self._known.pop(key, None)
        if known is not None:
            try:
                return known.result()
            except Exception:  # noqa: BLE001 - throttled, stopped, refused: read as any row
                pass
        with self._lock:
            self.reads += 1
        return self._read(key)

    def _read(self, key: str) -> list[dict[str, str]]:
        if self.key == "username":
            try:
                user = self.paced(lambda: self.gateway.get_user(self.pool, key))
            except RowError as exc:
                if exc.code == "UserNotFoundException":
                    return []
                raise
            return [user]
        escaped = key.replace("\\", "\\\\").replace('"', '\\"')
        expression = f'{self.key} = "{escaped}"'
        users, _ = self.paced(
            lambda: self.gateway.list_users_page(self.pool, filter_expression=expression)
        )
        return [u for u in users if key_of(u, self.key) == key]

    def close(self) -> None:
        pass


_WHOLE = re.compile(r"^-?[0-9]+$")


def same_value(wanted: str, current: str | None, data_type: str = "String") -> bool:
    """Equal as Cognito stores them: Booleans in any case, Numbers by value, text exactly."""
    if current is None:
        return False
    if wanted == current:
        return True
    if data_type == "Boolean":
        return wanted.lower() == current.lower() and wanted.lower() in ("true", "false")
    if data_type == "Number" and _WHOLE.match(wanted) and _WHOLE.match(current):
        return int(wanted) == int(current)
    return False


@dataclass(frozen=True, slots=True)
class Resolver:
    """Finds the row's user, and with ``skip_unchanged`` keeps only what differs."""

    lookup: Lookup
    key: str
    skip_unchanged: bool
    mark_verified: bool
    types: Mapping[str, str] = field(default_factory=dict)  # attribute -> AttributeDataType

    def __call__(self, update: UserUpdate) -> UserUpdate | RowResult:
        lookup_key = update.key or update.username
        try:
            users = self.lookup.find(lookup_key)
        except Cancelled as exc:  # the job is stopping: the row was never sent
            return RowResult(update.row, update.username, Status.SKIPPED, error_code="Stopped",
                             error_message=str(exc) or "job stopping", key=update.key)
        except ThrottledError as exc:
            # Gave up under the read quota: Cognito's code, so the brake (row failures only)
            # does not count it, as for a write that gave up on throttles.
            return RowResult(update.row, update.username, Status.FAILED, error_code=exc.code,
                             error_message=f"the read before the write gave up on throttles: "
                                           f"{exc.code}", key=update.key)
        if self.key != "username":
            if not users:
                return RowResult(update.row, "", Status.INVALID, error_code="UserNotFound",
                                 error_message=f"no user has this {self.key}",
                                 key=update.key)
            if len(users) > 1:
                return RowResult(update.row, "", Status.INVALID, error_code="AmbiguousKey",
                                 error_message=f"{len(users)} users have this {self.key}",
                                 key=update.key)
        if not users:
            # Not in the snapshot: write anyway; Cognito says whether the user exists.
            return update
        current = users[0]
        username = current["username"]
        sets = list(update.attributes)
        deletes = list(update.deletes)
        if self.skip_unchanged:
            sets = [
                (n, v) for n, v in sets
                if not same_value(v, current.get(n.removeprefix("dev:")), self.types.get(n, ""))
            ]
            deletes = [n for n in deletes if n.removeprefix("dev:") in current]
        if self.mark_verified:
            sets = with_verified_flags(sets)
        if not sets and not deletes:
            return RowResult(update.row, username, Status.UNCHANGED, key=update.key,
                             error_message="already up to date")
        return UserUpdate(update.row, username, tuple(sets), tuple(deletes), key=update.key)
