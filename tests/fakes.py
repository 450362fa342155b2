"""Plain fakes for unit tests (no boto3, no HTTP): an in-memory Cognito and a manual clock."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from batch.errors import CognitoError, RowError, classify_code

SCHEMA = [
    {"Name": "sub", "AttributeDataType": "String", "Mutable": False},
    {"Name": "email", "AttributeDataType": "String", "Mutable": True},
    {"Name": "email_verified", "AttributeDataType": "Boolean", "Mutable": True},
    {"Name": "phone_number", "AttributeDataType": "String", "Mutable": True},
    {"Name": "phone_number_verified", "AttributeDataType": "Boolean", "Mutable": True},
    {"Name": "given_name", "AttributeDataType": "String", "Mutable": True},
    {"Name": "family_name", "AttributeDataType": "String", "Mutable": True},
    {"Name": "custom:department", "AttributeDataType": "String", "Mutable": True,
     "StringAttributeConstraints": {"MaxLength": "64"}},
    {"Name": "custom:tier", "AttributeDataType": "String", "Mutable": True,
     "StringAttributeConstraints": {"MaxLength": "16"}},
    {"Name": "custom:level", "AttributeDataType": "Number", "Mutable": True,
     "NumberAttributeConstraints": {"MinValue": "1", "MaxValue": "10"}},
    {"Name": "custom:employee_id", "AttributeDataType": "String", "Mutable": False},
]


class ManualClock:
    """A clock tests move by hand; ``sleep`` advances it instead of waiting."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> bool:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds
        return False


class FakeCognito:
    """Enough of the gateway for the job: users in a dict, errors scripted per username."""

    region = "us-east-1"

    def __init__(self, users: Mapping[str, dict[str, str]] | None = None) -> None:
        self.users = {u: dict(a) for u, a in (users or {}).items()}
        self.calls: list[tuple[str, str]] = []
        self.script: dict[str, list[str]] = {}  # username -> error codes to raise, in order
        self.hook: Callable[[str], None] | None = None
        self._lock = threading.Lock()

    def _maybe_fail(self, op: str, username: str) -> None:
        with self._lock:
            self.calls.append((op, username))
            codes = self.script.get(username)
            code = codes.pop(0) if codes else None
        if self.hook is not None:
            self.hook(username)
        if code:
            raise classify_code(code, 400)(code, "scripted", operation=op)
        if username not in self.users:
            raise RowError("UserNotFoundException", "User does not exist.", operation=op)

    def describe_user_pool(self, user_pool_id: str) -> dict[str, Any]:
        if user_pool_id != "us-east-1_test":
            raise CognitoError("ResourceNotFoundException", "no pool")
        return {"Id": user_pool_id, "Name": "test", "SchemaAttributes": SCHEMA,
                "AutoVerifiedAttributes": ["email"]}

    def update_user_attributes(
        self, user_pool_id: str, username: str, attributes: Sequence[tuple[str, str]],
        *, client_metadata: Mapping[str, str] | None = None,
    ) -> None:
        self._maybe_fail("update", username)
        with self._lock:
            self.users[username].update(dict(attributes))

    def delete_user_attributes(
        self, user_pool_id: str, username: str, names: Sequence[str]
    ) -> None:
        self._maybe_fail("delete", username)
        with self._lock:
            for name in names:
                self.users[username].pop(name, None)

    def get_user(self, user_pool_id: str, username: str) -> dict[str, str]:
        """A read (for before-images and diffs): not counted in ``calls``, never scripted."""
        with self._lock:
            if username not in self.users:
                raise RowError("UserNotFoundException", "User does not exist.", operation="get")
            return {**self.users[username], "username": username}

    def list_users_page(
        self, user_pool_id: str, *, pagination_token: str | None = None,
        filter_expression: str | None = None, limit: int = 60,
        attributes_to_get: Sequence[str] | None = None,
    ) -> tuple[list[dict[str, str]], str | None]:
        """ListUsers without filters: pages of ``limit`` in name order, the token an offset."""
        start = int(pagination_token or 0)
        with self._lock:
            names = sorted(self.users)
            page = [{**self.users[n], "username": n} for n in names[start : start + limit]]
        more = start + limit < len(names)
        return page, str(start + limit) if more else None
