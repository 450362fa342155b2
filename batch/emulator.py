"""A local Cognito for tests, the demo and benchmarks: moto behind a quota / fault front.

    boto3 client --HTTP--> front (ThreadingHTTPServer) --HTTP keep-alive--> moto cognito-idp app

The front adds what moto lacks: per-category rate quotas and the per-user write limit
(TooManyRequestsException), latency, injected faults and dropped connections, the attribute
rules of `batch.emulator_rules`, verification messages, and admin endpoints under
/_emulator/. Everything binds 127.0.0.1 only.

Setup helpers (`create_pool`, `seed_users`, `get_user_attributes`) bypass the front: they talk
to moto directly, so they spend no quota, draw no faults and leave the stats alone.
`seed_users` writes through moto's in-process backend (the code AdminCreateUser runs) because
moto's HTTP path costs milliseconds a call. moto's state is per process: two emulators in one
process share pools and users.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import io
import json
import os
import random
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit
from wsgiref.types import WSGIApplication

from batch.emulator_rules import (
    DEFAULT_QUOTAS,
    PER_USER_WRITE_OPERATIONS,
    QUOTA_CATEGORIES,
    PoolRules,
    TokenBucket,
    UpdatePlan,
    bucket_for,
    needs_current_values,
    plan_update,
    validate_update,
)

__all__ = [
    "DEFAULT_CUSTOM_SCHEMA",
    "Emulator",
    "EmulatorAdmin",
    "EmulatorError",
    "EmulatorSettings",
    "add_arguments",
    "run_from_args",
]

HOST = "127.0.0.1"
DEFAULT_REGION = "us-east-1"
TARGET_PREFIX = "AWSCognitoIdentityProviderService."
JSON_TYPE = "application/x-amz-json-1.1"
UPDATE = "AdminUpdateUserAttributes"
OUTCOMES = ("accepted", "throttled", "faults", "dropped", "invalid", "injected", "errors")
# Forwarded operations that change a pool's schema or settings: drop the cached rules.
_POOL_CHANGES = frozenset({"AddCustomAttributes", "UpdateUserPool", "DeleteUserPool"})
_POLL_SECONDS = 0.05  # how soon serve_forever notices shutdown(); stop() waits this long
_FORWARDED_HEADERS = ("Content-Type", "X-Amz-Target", "Authorization", "X-Amz-Date")

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
)  # fmt: skip


class EmulatorError(Exception):
    """A call to moto or to the admin API failed; `code` is the Cognito / admin error code."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


@dataclass
class EmulatorSettings:
    """Limits and faults of the front. Rates are requests/s; fractions are 0..1."""

    quotas: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_QUOTAS))
    burst_seconds: float = 1.0
    per_user_write_rate: float = 10.0  # 0 turns the per-user limit off
    latency_ms: float = 0.0
    fault_rate: float = 0.0
    drop_rate: float = 0.0
    seed: int = 0
    ceiling: bool = False

    def updated(self, changes: Mapping[str, Any]) -> EmulatorSettings:
        """A validated copy with `changes` applied; `quotas` merge, a None rate removes one."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
        values = asdict(self)
        for name, value in changes.items():
            if name == "quotas":
                values["quotas"] = _merge_quotas(values["quotas"], value)
            elif name == "ceiling":
                if not isinstance(value, bool):
                    raise ValueError("ceiling must be true or false")
                values[name] = value
            elif name == "seed":
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError("seed must be an integer")
                values[name] = value
            else:
                values[name] = _number(name, value)
        result = EmulatorSettings(**values)
        result.check()
        return result

    def check(self) -> None:
        if self.burst_seconds <= 0:
            raise ValueError("burst_seconds must be > 0")
        if self.per_user_write_rate < 0 or self.latency_ms < 0:
            raise ValueError("per_user_write_rate and latency_ms must be >= 0")
        for name in ("fault_rate", "drop_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        for category, rate in self.quotas.items():
            if category not in DEFAULT_QUOTAS:
                known = ", ".join(DEFAULT_QUOTAS)
                raise ValueError(f"unknown quota category {category!r} (known: {known})")
            if rate <= 0:
                raise ValueError(f"quota {category} must be > 0 (omit it for no limit)")


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    return float(value)


def _merge_quotas(current: dict[str, float], value: Any) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise ValueError("quotas must be an object of category -> rate")
    merged = dict(current)
    for category, rate in value.items():
        if rate is None:
            merged.pop(str(category), None)
        else:
            merged[str(category)] = _number(f"quota {category}", rate)
    return merged


@dataclass
class _Injection:
    operation: str
    remaining: int
    code: str
    message: str
    status: int
    reserved: int = 0


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


def _json_reply(status: int, payload: Any, *headers: tuple[str, str]) -> _Reply:
    return _Reply(status, json.dumps(payload).encode(), (("Content-Type", JSON_TYPE), *headers))


def _error_reply(status: int, code: str, message: str) -> _Reply:
    return _json_reply(
        status, {"__type": code, "message": message}, ("x-amzn-ErrorType", f"{code}:")
    )


def _region_of(pool_id: str) -> str:
    region, sep, _ = pool_id.partition("_")
    return region if sep and region else DEFAULT_REGION


def _auth_header(region: str) -> str:
    # moto routes and picks the region from the credential scope; it checks no signature.
    return (
        f"AWS4-HMAC-SHA256 Credential=testing/20260101/{region}/cognito-idp/aws4_request, "
        "SignedHeaders=host, Signature=x"
    )


class _Moto:
    """moto's cognito-idp app on a keep-alive WSGI server, and a keep-alive client for it."""

    def __init__(self) -> None:
        from moto.moto_server.werkzeug_app import create_backend_app

        # Serving the cognito-idp app directly skips moto's DomainDispatcherApplication, which
        # rescans moto's package folder on every request (measured ~270 vs ~185 calls/s).
        self.server = _WSGIServer(create_backend_app("cognito-idp"))
        self.port = int(self.server.server_address[1])
        self._local = threading.local()
        self._thread = threading.Thread(
            target=self.server.serve_forever,
            args=(_POLL_SECONDS,),
            name="emulator-moto",
            daemon=True,
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        _stop_server(self.server, self._thread)

    def _connection(self, fresh: bool = False) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None or fresh:
            if conn is not None:
                conn.close()
            conn = http.client.HTTPConnection(HOST, self.port, timeout=60)
            self._local.conn = conn
        return conn

    def send(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes, str | None]:
        """POST / on this thread's connection; one retry on a stale keep-alive connection."""
        for attempt in (0, 1):
            conn = self._connection(fresh=attempt == 1)
            try:
                conn.request("POST", "/", body, dict(headers))
                response = conn.getresponse()
                data = response.read()
                return response.status, data, response.getheader("x-amzn-RequestId")
            except (OSError, http.client.HTTPException):
                conn.close()
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def call(self, operation: str, payload: Mapping[str, Any], auth: str) -> dict[str, Any]:
        """One Cognito call straight to moto; raises EmulatorError on an error answer."""
        headers = {
            "Content-Type": JSON_TYPE,
            "X-Amz-Target": TARGET_PREFIX + operation,
            "Authorization": auth,
        }
        status, data, _ = self.send(json.dumps(payload).encode(), headers)
        try:
            answer: dict[str, Any] = json.loads(data) if data else {}
        except ValueError:
            answer = {"message": data[:200].decode("utf-8", "replace")}
        if status >= 300:
            code = str(answer.get("__type", "UnknownError")).rpartition("#")[2]
            raise EmulatorError(code, str(answer.get("message", "")), status)
        return answer


class _Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.operations: dict[str, dict[str, int]] = {}
        self.messages = {"email": 0, "sms": 0}
        self.pending_verification = 0
        self.in_flight = 0
        self.in_flight_peak = 0

    def begin(self, operation: str) -> None:
        with self._lock:
            self._row(operation)["calls"] += 1
            self.in_flight += 1
            self.in_flight_peak = max(self.in_flight_peak, self.in_flight)

    def end(self, operation: str, outcome: str) -> None:
        with self._lock:
            self._row(operation)[outcome] += 1
            self.in_flight -= 1

    def add_plan(self, plan: UpdatePlan) -> None:
        with self._lock:
            for channel, count in plan.messages.items():
                self.messages[channel] += count
            self.pending_verification += plan.pending_verification

    def _row(self, operation: str) -> dict[str, int]:
        row = self.operations.get(operation)
        if row is None:
            row = self.operations[operation] = dict.fromkeys(("calls", *OUTCOMES), 0)
        return row

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "operations": {op: dict(row) for op, row in self.operations.items()},
                "messages": dict(self.messages),
                "pending_verification": self.pending_verification,
                "in_flight_peak": self.in_flight_peak,
            }


class _Front:
    """The decisions the front makes for one request, apart from HTTP itself."""

    def __init__(
        self,
        moto: _Moto,
        settings: EmulatorSettings,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
    ) -> None:
        self.moto = moto
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._rules: dict[str, PoolRules] = {}
        self._injections: dict[str, _Injection] = {}
        self.stats = _Stats()
        self.settings = settings
        self._apply(settings)

    # --- admin -----------------------------------------------------------------------------
    def _apply(self, settings: EmulatorSettings) -> None:
        with self._lock:
            self.settings = settings
            self._buckets: dict[str, TokenBucket] = {
                category: bucket_for(rate, settings.burst_seconds, clock=self._clock)
                for category, rate in settings.quotas.items()
            }
            self._user_buckets: dict[tuple[str, str], TokenBucket] = {}
            self._prune_at = 10_000
            self._random = random.Random(settings.seed)

    def configure(self, changes: Mapping[str, Any]) -> EmulatorSettings:
        changes = dict(changes)
        base = EmulatorSettings() if changes.pop("defaults", False) else self.settings
        settings = base.updated(changes)
        self._apply(settings)
        return settings

    def reset(self) -> None:
        self.stats = _Stats()
        with self._lock:
            self._injections.clear()
            self._rules.clear()
        self._apply(self.settings)

    def inject(self, spec: Mapping[str, Any]) -> None:
        operation, after = spec.get("operation"), spec.get("after", 0)
        code, message = spec.get("code"), spec.get("message", "Injected error")
        status = spec.get("status", 400)
        if not isinstance(operation, str) or not isinstance(code, str):
            raise ValueError("inject needs string 'operation' and 'code'")
        if not isinstance(after, int) or after < 0 or not isinstance(status, int):
            raise ValueError("'after' must be an integer >= 0 and 'status' an integer")
        with self._lock:
            self._injections[operation] = _Injection(operation, after, code, str(message), status)

    def admin(self, method: str, path: str, body: bytes) -> _Reply:
        try:
            request = json.loads(body) if body.strip() else {}
            if not isinstance(request, dict):
                raise ValueError("the body must be a JSON object")
            if (method, path) == ("GET", "/_emulator/stats"):
                return _json_reply(200, self.stats.snapshot())
            if (method, path) == ("GET", "/_emulator/config"):
                return _json_reply(200, asdict(self.settings))
            if (method, path) == ("POST", "/_emulator/config"):
                return _json_reply(200, asdict(self.configure(request)))
            if (method, path) == ("POST", "/_emulator/reset"):
                self.reset()
                return _json_reply(200, {})
            if (method, path) == ("POST", "/_emulator/inject"):
                self.inject(request)
                return _json_reply(200, {})
        except ValueError as exc:  # json.JSONDecodeError is a ValueError too
            return _json_reply(400, {"error": "BadRequest", "message": str(exc)})
        return _json_reply(404, {"error": "NotFound", "message": f"{method} {path}"})

    # --- Cognito calls ---------------------------------------------------------------------
    def cognito(self, body: bytes, headers: Mapping[str, str]) -> _Reply | None:
        """Answer one Cognito call; None means: close the connection without answering."""
        target = headers.get("X-Amz-Target") or ""
        operation = target.removeprefix(TARGET_PREFIX) or "Unknown"
        settings = self.settings
        stats = self.stats
        stats.begin(operation)
        outcome = "errors"
        try:
            if settings.latency_ms > 0:
                self._sleep(settings.latency_ms / 1000.0)
            outcome, reply = self._decide(operation, body, headers, settings)
            return reply
        finally:
            stats.end(operation, outcome)

    def _decide(
        self, operation: str, body: bytes, headers: Mapping[str, str], settings: EmulatorSettings
    ) -> tuple[str, _Reply | None]:
        payload = _parse(body)
        injection = self._reserve_injection(operation)
        if isinstance(injection, _Reply):
            return "injected", injection
        accepted = False
        try:
            ceiling = settings.ceiling and operation == UPDATE
            if not ceiling and not self._admit(operation, payload, settings):
                return "throttled", _error_reply(400, "TooManyRequestsException", "Rate exceeded")
            fault = self._draw_fault(settings)
            if fault is not None:
                return fault
            if ceiling:
                accepted = True
                return "accepted", _json_reply(200, {})
            outcome, reply = self._forward(operation, body, headers, payload)
            accepted = outcome == "accepted"
            return outcome, reply
        finally:
            self._settle_injection(injection, accepted)

    def _reserve_injection(self, operation: str) -> _Injection | _Reply | None:
        # Injected errors come first, as an authorisation failure would. A call holds one of the
        # `after` slots while in flight and gives it back unless it is accepted, so no more
        # than `after` calls succeed after inject().
        with self._lock:
            injection = self._injections.get(operation)
            if injection is None:
                return None
            if injection.remaining - injection.reserved <= 0:
                return _error_reply(injection.status, injection.code, injection.message)
            injection.reserved += 1
            return injection

    def _settle_injection(self, injection: _Injection | _Reply | None, accepted: bool) -> None:
        if isinstance(injection, _Injection):
            with self._lock:
                injection.reserved -= 1
                injection.remaining -= int(accepted)

    def _admit(
        self, operation: str, payload: Mapping[str, Any], settings: EmulatorSettings
    ) -> bool:
        category = QUOTA_CATEGORIES.get(operation)
        bucket = self._buckets.get(category) if category else None
        if bucket is not None and not bucket.try_acquire():
            return False
        if operation in PER_USER_WRITE_OPERATIONS and settings.per_user_write_rate > 0:
            key = (str(payload.get("UserPoolId")), str(payload.get("Username")))
            return self._user_bucket(key, settings).try_acquire()
        return True

    def _user_bucket(self, key: tuple[str, str], settings: EmulatorSettings) -> TokenBucket:
        with self._lock:
            bucket = self._user_buckets.get(key)
            if bucket is None:
                if len(self._user_buckets) >= self._prune_at:
                    # A refilled bucket is the same as a new one, so dropping it changes nothing.
                    for old in [k for k, b in self._user_buckets.items() if b.idle_full()]:
                        del self._user_buckets[old]
                    self._prune_at = max(10_000, 2 * len(self._user_buckets))
                bucket = bucket_for(
                    settings.per_user_write_rate, settings.burst_seconds, clock=self._clock
                )
                self._user_buckets[key] = bucket
            return bucket

    def _draw_fault(self, settings: EmulatorSettings) -> tuple[str, _Reply | None] | None:
        if settings.fault_rate <= 0 and settings.drop_rate <= 0:
            return None
        with self._lock:
            draw = self._random.random()
        if draw < settings.fault_rate:
            return "faults", _error_reply(500, "InternalErrorException", "Internal error")
        if draw < settings.fault_rate + settings.drop_rate:
            return "dropped", None
        return None

    def _forward(
        self, operation: str, body: bytes, headers: Mapping[str, str], payload: dict[str, Any]
    ) -> tuple[str, _Reply]:
        auth = headers.get("Authorization") or _auth_header(DEFAULT_REGION)
        plan: UpdatePlan | None = None
        current: dict[str, str] | None = None
        if operation == UPDATE:
            rules = self._pool_rules(str(payload.get("UserPoolId", "")), auth)
            attributes = payload.get("UserAttributes")
            if rules is not None and isinstance(attributes, list):
                problems = validate_update(rules, attributes)
                if problems:
                    return "invalid", _error_reply(
                        400, "InvalidParameterException", "\n".join(problems)
                    )
                if needs_current_values(rules, attributes):
                    current = self._current_values(payload, auth)
                plan = plan_update(rules, attributes, current)
                if plan.deletes or plan.forward != attributes:
                    body = json.dumps({**payload, "UserAttributes": plan.forward}).encode()
        elif operation == "AdminDeleteUserAttributes":
            names = payload.get("UserAttributeNames")
            current = self._current_values(payload, auth)
            if current is not None and isinstance(names, list):
                # Cognito answers 200 for an attribute the user does not have; moto refuses it.
                # Only names the pool knows are dropped: an unknown one still goes to moto.
                rules = self._pool_rules(str(payload.get("UserPoolId", "")), auth)
                known = set(rules.attributes) if rules is not None else set()
                keep = [n for n in names if n in current or n not in known]
                if not keep:
                    return "accepted", _json_reply(200, {})
                body = json.dumps({**payload, "UserAttributeNames": keep}).encode()
        sent = {name: headers[name] for name in _FORWARDED_HEADERS if name in headers}
        status, data, request_id = self.moto.send(body, sent)
        extra = (("x-amzn-RequestId", request_id),) if request_id else ()
        reply = _Reply(status, data, (("Content-Type", JSON_TYPE), *extra))
        if operation in _POOL_CHANGES:
            with self._lock:
                self._rules.pop(str(payload.get("UserPoolId")), None)
        if status >= 300:
            return "errors", reply
        if plan is not None:
            if plan.deletes:
                self._delete_blanks(payload, plan.deletes, current, auth)
            self.stats.add_plan(plan)
        return "accepted", reply

    def _pool_rules(self, pool_id: str, auth: str) -> PoolRules | None:
        with self._lock:
            rules = self._rules.get(pool_id)
        if rules is None:
            try:
                answer = self.moto.call("DescribeUserPool", {"UserPoolId": pool_id}, auth)
            except EmulatorError:
                return None  # moto answers the update itself, e.g. ResourceNotFoundException
            rules = PoolRules.from_describe(answer["UserPool"])
            with self._lock:
                self._rules[pool_id] = rules
        return rules

    def _current_values(self, payload: Mapping[str, Any], auth: str) -> dict[str, str] | None:
        query = {"UserPoolId": payload.get("UserPoolId"), "Username": payload.get("Username")}
        try:
            answer = self.moto.call("AdminGetUser", query, auth)
        except EmulatorError:
            return None
        return {a["Name"]: a.get("Value", "") for a in answer.get("UserAttributes", [])}

    def _delete_blanks(
        self,
        payload: Mapping[str, Any],
        names: list[str],
        current: Mapping[str, str] | None,
        auth: str,
    ) -> None:
        # Cognito deletes an attribute sent with a blank value; moto would store "".
        if current is None:
            current = self._current_values(payload, auth) or {}
        present = [name for name in names if name in current]
        if present:
            query = {
                "UserPoolId": payload.get("UserPoolId"),
                "Username": payload.get("Username"),
                "UserAttributeNames": present,
            }
            self.moto.call("AdminDeleteUserAttributes", query, auth)


def _parse(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body) if body else {}
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


class _FrontHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so boto3's connection pool reuses connections
    disable_nagle_algorithm = True
    server: _FrontServer

    def do_POST(self) -> None:
        self._handle()

    def do_GET(self) -> None:
        self._handle()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = urlsplit(self.path).path
        front = self.server.front
        try:
            if path.startswith("/_emulator/"):
                reply: _Reply | None = front.admin(self.command, path, body)
            elif self.command == "POST":
                headers = {n: self.headers[n] for n in _FORWARDED_HEADERS if n in self.headers}
                reply = front.cognito(body, headers)
            else:
                reply = _json_reply(404, {"error": "NotFound", "message": path})
        except Exception as exc:  # the emulator's own failure: answer it like a service fault
            print(f"emulator: {type(exc).__name__}: {exc}", file=sys.stderr)
            reply = _error_reply(500, "InternalErrorException", f"Emulator error: {exc}")
        if reply is None:
            self.close_connection = True  # the "drop": no status line, no bytes
            return
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    """A threaded HTTP/1.1 server on 127.0.0.1 that can close its keep-alive connections."""

    daemon_threads = True
    request_queue_size = 128  # socketserver's 5 resets connections when many clients start at once

    def __init__(self, port: int, handler: type[BaseHTTPRequestHandler]) -> None:
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__((HOST, port), handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        # Keep-alive handler threads outlive shutdown(); end them so a stopped server is gone.
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _stop_server(server: _Server, thread: threading.Thread) -> None:
    server.shutdown()
    server.close_open_connections()
    server.server_close()
    thread.join()


class _FrontServer(_Server):
    def __init__(self, front: _Front, port: int) -> None:
        self.front = front
        super().__init__(port, _FrontHandler)


class _WSGIHandler(BaseHTTPRequestHandler):
    # werkzeug's dev server closes every connection after one response (werkzeug 3.x), so each
    # forwarded call paid a TCP connect and a new thread; this minimal one keeps them open.
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _WSGIServer

    def do_POST(self) -> None:
        self._run()

    def do_GET(self) -> None:
        self._run()

    def _run(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": self.command,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote(path, encoding="latin-1"),
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "SERVER_NAME": HOST,
            "SERVER_PORT": str(self.server.server_address[1]),
            "SERVER_PROTOCOL": self.request_version,
            "REMOTE_ADDR": self.client_address[0],
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for name, value in self.headers.items():
            key = "HTTP_" + name.upper().replace("-", "_")
            if key not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                environ[key] = value
        started: list[Any] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            started[:] = [status, headers]
            return None

        chunks = self.server.app(environ, start_response)
        try:
            data = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        status, headers = started
        code, _, reason = str(status).partition(" ")
        self.send_response(int(code), reason)
        for name, value in headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _WSGIServer(_Server):
    def __init__(self, app: WSGIApplication) -> None:
        self.app = app
        super().__init__(0, _WSGIHandler)


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
        self._moto: _Moto | None = None
        self._front: _Front | None = None
        self._server: _FrontServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Emulator:
        if self._server is not None:
            return self
        self._moto = _Moto()
        self._moto.start()
        self._front = _Front(self._moto, self.settings, clock=self._clock, sleep=self._sleep)
        try:
            self._server = _FrontServer(self._front, self._port)
        except OSError:
            self._moto.stop()
            raise
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            args=(_POLL_SECONDS,),
            name="emulator-front",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            _stop_server(self._server, self._thread)
        if self._moto is not None:
            self._moto.stop()
        self._server = self._thread = self._moto = self._front = None

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

    def _running(self) -> tuple[_Moto, _FrontServer, _Front]:
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
        """Zero the stats, refill the buckets, clear injections; moto's data stays."""
        self._running()[2].reset()

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
        answer = self._running()[0].call("CreateUserPool", request, _auth_header(region))
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
            "DescribeUserPool", query, _auth_header(_region_of(pool_id))
        )
        return PoolRules.from_describe(answer["UserPool"])

    def get_user_attributes(self, pool_id: str, username: str) -> dict[str, str]:
        """AdminGetUser's attributes as a dict, read from moto directly."""
        query = {"UserPoolId": pool_id, "Username": username}
        answer = self._running()[0].call("AdminGetUser", query, _auth_header(_region_of(pool_id)))
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


# --- command line ------------------------------------------------------------------------------
_QUOTA_ALIASES = {
    "update": "UserUpdate", "read": "UserRead", "list": "UserList",
    "poolread": "UserPoolRead", "create": "UserCreation",
    **{category.lower(): category for category in DEFAULT_QUOTAS},
}  # fmt: skip


def _quota(text: str) -> tuple[str, float | None]:
    name, sep, rate = text.partition("=")
    category = _QUOTA_ALIASES.get(name.strip().lower())
    if not sep or category is None:
        known = ", ".join(sorted(DEFAULT_QUOTAS))
        raise argparse.ArgumentTypeError(f"expected CATEGORY=RATE with CATEGORY one of {known}")
    if rate.strip().lower() in ("none", "off", "unlimited"):
        return category, None
    try:
        value = float(rate)
    except ValueError:
        raise argparse.ArgumentTypeError(f"rate {rate!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("rate must be > 0 (or 'off')")
    return category, value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `emulator` command's options."""
    add = parser.add_argument
    add("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free one)")
    add(
        "--quota",
        type=_quota,
        action="append",
        default=[],
        metavar="CATEGORY=RATE",
        help="requests/s for a quota category (UserUpdate, UserRead, UserList, UserPoolRead, "
        "UserCreation; 'update=50' for short; RATE 'off' for none); repeatable",
    )
    add("--latency-ms", type=_non_negative, default=0.0, help="added to every Cognito call")
    add("--fault-rate", type=_fraction, default=0.0, help="fraction answered HTTP 500")
    add("--drop-rate", type=_fraction, default=0.0, help="fraction with the connection dropped")
    add("--seed", type=int, default=0, help="seed for faults and drops")
    add(
        "--ceiling",
        action="store_true",
        help="answer AdminUpdateUserAttributes at once, without moto or quota",
    )
    add("--create-pool", metavar="NAME", help="create a user pool")
    add(
        "--default-schema",
        action="store_true",
        help="give the created pool the test schema (custom:department, custom:level, ...)",
    )
    add("--users", metavar="CSV", help="seed the created pool: username column, then attributes")
    add("--ready-file", metavar="PATH",
        help='write {"endpoint_url", "user_pool_id"} here (atomically) once ready')  # fmt: skip


def run_from_args(args: argparse.Namespace) -> int:
    """Run the emulator until SIGINT / SIGTERM. 0 on a clean stop, 2 on bad input."""
    if (args.users or args.default_schema) and not args.create_pool:
        print("error: --users and --default-schema need --create-pool", file=sys.stderr)
        return 2
    if args.users and not Path(args.users).is_file():
        print(f"error: no such file: {args.users}", file=sys.stderr)
        return 2
    try:
        settings = EmulatorSettings().updated({
            "quotas": dict(args.quota), "latency_ms": args.latency_ms,
            "fault_rate": args.fault_rate, "drop_rate": args.drop_rate,
            "seed": args.seed, "ceiling": args.ceiling,
        })  # fmt: skip
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    previous = {sig: signal.signal(sig, _setter(stop)) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with Emulator(settings, port=args.port) as emulator:
            pool_id = _prepare(emulator, args)
            if args.ready_file:
                _write_atomically(Path(args.ready_file), {
                    "endpoint_url": emulator.endpoint_url, "user_pool_id": pool_id,
                })  # fmt: skip
            print(f"endpoint_url={emulator.endpoint_url}")
            if pool_id:
                print(f"user_pool_id={pool_id}")
            sys.stdout.flush()
            stop.wait()
    except (OSError, ValueError, EmulatorError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError | EmulatorError) else 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _setter(event: threading.Event) -> Callable[[int, FrameType | None], None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        event.set()

    return handler


def _prepare(emulator: Emulator, args: argparse.Namespace) -> str | None:
    if not args.create_pool:
        return None
    schema = DEFAULT_CUSTOM_SCHEMA if args.default_schema else ()
    pool_id = emulator.create_pool(args.create_pool, custom_attributes=schema)
    if args.users:
        emulator.seed_users_from_csv(pool_id, args.users)
    return pool_id


def _write_atomically(path: Path, payload: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(payload, handle)
    os.replace(temp, path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cognito-batch emulator", description="Run a local Cognito (moto behind a front)."
    )
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
