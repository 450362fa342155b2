"""The emulator's library API: `Emulator` runs moto and the front in this process and has the
setup helpers; `EmulatorAdmin` drives the admin endpoints of one in another process.

Setup helpers (`create_pool`, `seed_users`, `get_user_attributes`) bypass the front: they talk
to moto directly, so they spend no quota, draw no faults and leave the stats alone.
`seed_users` writes through moto's in-process backend (the code AdminCreateUser runs) because
moto's HTTP path costs milliseconds a call. moto's state is per process: two emulators in one
process share pools and users.
"""

from __future__ import annotations

import csv
import http.client
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from batch.emulator.front import EmulatorSettings, Front
from batch.emulator.rules import PoolRules, validate_update
from batch.emulator.s3 import S3Server
from batch.emulator.server import (
    DEFAULT_REGION,
    HOST,
    POLL_SECONDS,
    EmulatorError,
    FrontServer,
    Moto,
    auth_header,
    stop_server,
)

DEFAULT_CUSTOM_SCHEMA: tuple[dict[str, Any], ...] = (
    {"Name": "department", "AttributeDataType": "String", "Mutable": True,
     "StringAttributeConstraints": {"MinLength": "0", "MaxLength": "64"}},
    {"Name": "employee_id", "AttributeDataType": "String", "Mutable": False,
     "StringAttributeConstraints": {"MinLength": "1", "MaxLength": "32"}},
    {"Name": "level", "AttributeDataType": "Number", "Mutable": True,
     "NumberAttributeConstraints": {"MinValue": "1", "MaxValue": "10"}},
    {"Name": "tier", "AttributeDataType": "String", "Mutable": True,
     "StringAttributeConstraints": {"MinLength": "0", "MaxLength": "16"}},
    # Cognito stores custom Booleans as the strings "true" / "false"; moto accepts the type.
    {"Name": "is_manager", "AttributeDataType": "Boolean", "Mutable": True},
    {"Name": "start_date", "AttributeDataType": "String", "Mutable": True,
     "StringAttributeConstraints": {"MinLength": "0", "MaxLength": "32"}},
)


def _region_of(pool_id: str) -> str:
    region, sep, _ = pool_id.partition("_")
    return region if sep and region else DEFAULT_REGION


class Emulator:
    """Local Cognito: `with Emulator() as emu:` then point boto3 at `emu.endpoint_url`."""

    def __init__(
        self,
        settings: EmulatorSettings | None = None,
        *,
        host: str = HOST,
        port: int = 0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if host != HOST:
            raise ValueError(f"the emulator binds {HOST} only, not {host!r}")
        self.settings = settings or EmulatorSettings()
        self.settings.check()
        self._port = port
        self._clock = clock
        self._sleep = sleep
        self._moto: Moto | None = None
        self._front: Front | None = None
        self._server: FrontServer | None = None
        self._thread: threading.Thread | None = None
        self._s3: S3Server | None = None

    def start(self) -> Emulator:
        if self._server is not None:
            return self
        self._moto = Moto()
        self._moto.start()
        self._s3 = S3Server()
        self._s3.start()
        self._front = Front(self._moto, self.settings, clock=self._clock, sleep=self._sleep)
        try:
            self._server = FrontServer(self._front, self._port)
        except OSError:
            self._moto.stop()
            self._s3.stop()
            raise
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            args=(POLL_SECONDS,),
            name="emulator-front",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._front is not None:
            self._front.close()
        if self._server is not None and self._thread is not None:
            stop_server(self._server, self._thread)
        if self._moto is not None:
            self._moto.stop()
        if self._s3 is not None:
            self._s3.stop()
        self._server = self._thread = self._moto = self._front = self._s3 = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def endpoint_url(self) -> str:
        server = self._running()[1]
        return f"http://{HOST}:{server.server_address[1]}"

    @property
    def moto_url(self) -> str:
        """moto itself, without the front: no quota, no faults, no rules."""
        return f"http://{HOST}:{self._running()[0].port}"

    @property
    def s3_endpoint_url(self) -> str:
        """moto's S3 (set ``AWS_ENDPOINT_URL_S3`` to it); see ``batch.emulator.s3``."""
        return self.s3.endpoint_url

    @property
    def s3(self) -> S3Server:
        """The S3 front: ``deny(bucket, prefix)``, ``stats()``."""
        self._running()
        assert self._s3 is not None
        return self._s3

    def _running(self) -> tuple[Moto, FrontServer, Front]:
        if self._moto is None or self._server is None or self._front is None:
            raise RuntimeError("the emulator is not running; call start() first")
        return self._moto, self._server, self._front

    # --- admin -----------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        return self._running()[2].stats.snapshot()

    def configure(self, *, defaults: bool = False, **changes: Any) -> EmulatorSettings:
        """Change settings (quotas merge) and reset the buckets; `defaults` starts afresh."""
        self.settings = self._running()[2].configure({"defaults": defaults, **changes})
        return self.settings

    def reset(self) -> None:
        """Zero the stats, refill the buckets, clear injections and S3 denials; moto's data
        stays."""
        self._running()[2].reset()
        self.s3.reset()

    def inject(
        self,
        operation: str,
        *,
        after: int = 0,
        code: str = "NotAuthorizedException",
        message: str = "Injected error",
        status: int = 400,
    ) -> None:
        """After `after` more accepted calls of `operation`, answer every call with `code`."""
        spec = {"operation": operation, "after": after, "code": code, "message": message}
        self._running()[2].inject({**spec, "status": status})

    # --- setup (straight to moto) ------------------------------------------------------------
    def create_pool(
        self,
        name: str,
        *,
        custom_attributes: Sequence[Mapping[str, Any]] = (),
        auto_verified: Sequence[str] = (),
        require_verification_before_update: Sequence[str] = (),
        username_attributes: Sequence[str] | None = None,
        region: str = DEFAULT_REGION,
    ) -> str:
        """Create a user pool in moto and return its id. Schema entries as in SchemaAttributes."""
        missing = set(require_verification_before_update) - set(auto_verified)
        if missing:
            raise ValueError(f"verification before update needs auto-verified {sorted(missing)}")
        schema = [
            {**entry, "Name": str(entry["Name"]).removeprefix("custom:")}
            for entry in custom_attributes
        ]
        request: dict[str, Any] = {"PoolName": name, "AutoVerifiedAttributes": list(auto_verified)}
        if schema:
            request["Schema"] = schema
        if require_verification_before_update:
            request["UserAttributeUpdateSettings"] = {
                "AttributesRequireVerificationBeforeUpdate": list(
                    require_verification_before_update
                )
            }
        if username_attributes is not None:
            request["UsernameAttributes"] = list(username_attributes)
        answer = self._running()[0].call("CreateUserPool", request, auth_header(region))
        return str(answer["UserPool"]["Id"])

    def seed_users(
        self,
        pool_id: str,
        users: Iterable[Mapping[str, str]],
        *,
        username_key: str = "username",
    ) -> int:
        """Create users (AdminCreateUser, MessageAction SUPPRESS); other keys are attributes.

        Attributes are checked against the pool schema like Cognito would; blank ones are
        skipped. Returns how many users were created.
        """
        from moto.backends import get_backend
        from moto.core.models import DEFAULT_ACCOUNT_ID

        rules = self._rules_of(pool_id)
        account = os.environ.get("MOTO_ACCOUNT_ID", DEFAULT_ACCOUNT_ID)  # as moto picks it
        backend = get_backend("cognito-idp")[account][_region_of(pool_id)]
        count = 0
        for row, user in enumerate(users, start=1):
            username = user.get(username_key)
            if not username:
                raise ValueError(f"user {row}: no {username_key!r}")
            attributes = [
                {"Name": key, "Value": value}
                for key, value in user.items()
                if key != username_key and value not in ("", None)
            ]
            problems = validate_update(rules, attributes, creating=True)
            if problems:
                raise ValueError(f"user {row} ({username}): " + " ".join(problems))
            try:
                # None as over HTTP without TemporaryPassword: moto makes no password up.
                no_password: Any = None
                backend.admin_create_user(pool_id, username, "SUPPRESS", no_password, attributes)
            except Exception as exc:  # moto's own exceptions carry code and message
                code = str(getattr(exc, "error_type", type(exc).__name__))
                raise EmulatorError(code, f"user {row} ({username}): {exc}") from exc
            count += 1
        return count

    def seed_users_from_csv(self, pool_id: str, path: str | os.PathLike[str]) -> int:
        """Seed from a CSV: header row, first column the username, others attributes.

        Empty cells are skipped; a bare column name that is only in the schema as a custom
        attribute ("department" for custom:department) means that attribute.
        """
        known = self._rules_of(pool_id).attributes
        return self.seed_users(pool_id, _csv_users(Path(path), known), username_key=_CSV_USERNAME)

    def _rules_of(self, pool_id: str) -> PoolRules:
        query = {"UserPoolId": pool_id}
        answer = self._running()[0].call(
            "DescribeUserPool", query, auth_header(_region_of(pool_id))
        )
        return PoolRules.from_describe(answer["UserPool"])

    def get_user_attributes(self, pool_id: str, username: str) -> dict[str, str]:
        """AdminGetUser's attributes as a dict, read from moto directly."""
        query = {"UserPoolId": pool_id, "Username": username}
        answer = self._running()[0].call("AdminGetUser", query, auth_header(_region_of(pool_id)))
        return {a["Name"]: a.get("Value", "") for a in answer.get("UserAttributes", [])}


# The first CSV column is the username whatever its header says; this key cannot clash.
_CSV_USERNAME = "\0username"


def _csv_users(path: Path, known: Mapping[str, object]) -> Iterator[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header:
            raise ValueError(f"{path}: empty CSV, expected a header row")
        names = [_CSV_USERNAME]
        for name in (column.strip() for column in header[1:]):
            custom = f"custom:{name}"
            names.append(custom if name not in known and custom in known else name)
        for line in reader:
            if line:
                yield {name: value for name, value in zip(names, line, strict=False)}


class EmulatorAdmin:
    """The admin endpoints over HTTP, for an emulator running in another process."""

    def __init__(self, endpoint_url: str, *, timeout: float = 30.0) -> None:
        parts = urlsplit(endpoint_url)
        if parts.scheme != "http" or parts.hostname not in (HOST, "localhost"):
            raise ValueError(f"an emulator lives on http://{HOST}:PORT, not {endpoint_url!r}")
        self._host, self._port, self._timeout = HOST, parts.port or 80, timeout

    def _request(self, method: str, path: str, payload: Any = None) -> Any:
        conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        try:
            body = None if payload is None else json.dumps(payload).encode()
            conn.request(method, path, body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            answer = json.loads(response.read() or b"{}")
        finally:
            conn.close()
        if response.status >= 300:
            code = str(answer.get("error", "Error"))
            raise EmulatorError(code, str(answer.get("message", "")), response.status)
        return answer

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", "/_emulator/stats")
        return result

    def configure(self, *, defaults: bool = False, **changes: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "POST", "/_emulator/config", {"defaults": defaults, **changes}
        )
        return result

    def reset(self) -> None:
        self._request("POST", "/_emulator/reset", {})

    def inject(
        self,
        operation: str,
        *,
        after: int = 0,
        code: str = "NotAuthorizedException",
        message: str = "Injected error",
        status: int = 400,
    ) -> None:
        spec = {"operation": operation, "after": after, "code": code, "message": message}
        self._request("POST", "/_emulator/inject", {**spec, "status": status})
