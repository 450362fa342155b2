"""The front's per-request decisions, apart from HTTP: quota admission, latency, faults and
drops, injected errors, forwarding to moto with the attribute rules enforced, and stats.

`EmulatorSettings` holds the limits and faults it applies; the admin endpoints change them.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from batch.emulator import sync_rules
from batch.emulator.neighbours import Neighbour, parse_schedule, start_neighbours
from batch.emulator.rules import (
    DEFAULT_QUOTAS,
    PER_USER_WRITE_OPERATIONS,
    QUOTA_CATEGORIES,
    PoolRules,
    TokenBucket,
    UpdatePlan,
    bucket_for,
    needs_current_values,
    plan_update,
    username_problem,
    validate_update,
)
from batch.emulator.server import (
    DEFAULT_REGION,
    FORWARDED_HEADERS,
    JSON_TYPE,
    TARGET_PREFIX,
    EmulatorError,
    Moto,
    Reply,
    auth_header,
    error_reply,
    json_reply,
)

UPDATE = "AdminUpdateUserAttributes"
# Operations naming one user: their Username is checked against Cognito's pattern and length.
_USER_OPERATIONS = frozenset({UPDATE, "AdminDeleteUserAttributes", "AdminGetUser"})
OUTCOMES = ("accepted", "throttled", "faults", "dropped", "invalid", "injected", "errors")
#: The answer to GET /_emulator/identity; batch/cognito.py checks for the same before it skips
#: confirmation (the tool does not import the emulator; a test checks the two agree).
IDENTITY = {"service": "cognito-batch-emulator"}
# Forwarded operations that change a pool's schema or settings: drop the cached rules.
_POOL_CHANGES = frozenset({"AddCustomAttributes", "UpdateUserPool", "DeleteUserPool"})


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
    # GetProvisionedLimit: "answer" (from `quotas`), "deny" (AccessDeniedException) or
    # "unknown" (UnknownOperationException, as an endpoint without the operation answers).
    provisioned_limit: str = "answer"
    # Background load per quota category, e.g. {"UserUpdate": "10@20s,30@20s,5"} (neighbours.py)
    neighbours: dict[str, str] = field(default_factory=dict)
    neighbour_arrivals: str = "poisson"  # or "paced"

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
            elif name in ("provisioned_limit", "neighbour_arrivals"):
                values[name] = str(value)
            elif name == "neighbours":
                if not isinstance(value, Mapping):
                    raise ValueError("neighbours must be an object of category -> schedule")
                values[name] = {str(k): str(v) for k, v in value.items() if v}
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
        if self.provisioned_limit not in ("answer", "deny", "unknown"):
            raise ValueError("provisioned_limit must be answer, deny or unknown")
        if self.neighbour_arrivals not in ("poisson", "paced"):
            raise ValueError("neighbour_arrivals must be poisson or paced")
        for category, schedule in self.neighbours.items():
            if category not in DEFAULT_QUOTAS:
                raise ValueError(f"unknown neighbour category {category!r}")
            parse_schedule(schedule)
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


class _Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.operations: dict[str, dict[str, int]] = {}
        self.messages = {"email": 0, "sms": 0}
        self.pending_verification = 0
        self.in_flight = 0
        self.in_flight_peak = 0
        self.neighbours: list[Neighbour] = []

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
                "neighbours": {n.category: n.snapshot() for n in self.neighbours},
            }


class Front:
    """The decisions the front makes for one request, apart from HTTP itself."""

    def __init__(
        self,
        moto: Moto,
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
        for old in getattr(self, "_neighbours", []):
            old.stop()
        with self._lock:
            self.settings = settings
            self._buckets: dict[str, TokenBucket] = {
                category: bucket_for(rate, settings.burst_seconds, clock=self._clock)
                for category, rate in settings.quotas.items()
            }
            self._user_buckets: dict[tuple[str, str], TokenBucket] = {}
            self._prune_at = 10_000
            self._random = random.Random(settings.seed)
        # Neighbours draw from the same buckets; their schedule starts now (configure, reset).
        self._neighbours = start_neighbours(
            settings.neighbours,
            {c: b.try_acquire for c, b in self._buckets.items()},
            poisson=settings.neighbour_arrivals == "poisson", seed=settings.seed,
            clock=self._clock,
        )
        self.stats.neighbours = self._neighbours

    def close(self) -> None:
        """Stop the neighbours' threads."""
        for neighbour in self._neighbours:
            neighbour.stop()

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

    def admin(self, method: str, path: str, body: bytes) -> Reply:
        try:
            request = json.loads(body) if body.strip() else {}
            if not isinstance(request, dict):
                raise ValueError("the body must be a JSON object")
            if (method, path) == ("GET", "/_emulator/identity"):
                return json_reply(200, IDENTITY)
            if (method, path) == ("GET", "/_emulator/stats"):
                return json_reply(200, self.stats.snapshot())
            if (method, path) == ("GET", "/_emulator/config"):
                return json_reply(200, asdict(self.settings))
            if (method, path) == ("POST", "/_emulator/config"):
                return json_reply(200, asdict(self.configure(request)))
            if (method, path) == ("POST", "/_emulator/reset"):
                self.reset()
                return json_reply(200, {})
            if (method, path) == ("POST", "/_emulator/inject"):
                self.inject(request)
                return json_reply(200, {})
        except ValueError as exc:  # json.JSONDecodeError is a ValueError too
            return json_reply(400, {"error": "BadRequest", "message": str(exc)})
        return json_reply(404, {"error": "NotFound", "message": f"{method} {path}"})

    # --- Cognito calls ---------------------------------------------------------------------
    def cognito(self, body: bytes, headers: Mapping[str, str]) -> Reply | None:
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
            if operation == "GetProvisionedLimit":  # moto lacks it: the front answers
                outcome, answer = provisioned_limit(_parse(body), settings)
                return answer
            outcome, reply = self._decide(operation, body, headers, settings)
            return reply
        finally:
            stats.end(operation, outcome)

    def _decide(
        self, operation: str, body: bytes, headers: Mapping[str, str], settings: EmulatorSettings
    ) -> tuple[str, Reply | None]:
        payload = _parse(body)
        injection = self._reserve_injection(operation)
        if isinstance(injection, Reply):
            return "injected", injection
        accepted = False
        try:
            ceiling = settings.ceiling and operation == UPDATE
            if not ceiling and not self._admit(operation, payload, settings):
                return "throttled", error_reply(400, "TooManyRequestsException", "Rate exceeded")
            fault = self._draw_fault(settings)
            if fault is not None:
                return fault
            if ceiling:
                accepted = True
                return "accepted", json_reply(200, {})
            outcome, reply = self._forward(operation, body, headers, payload)
            accepted = outcome == "accepted"
            return outcome, reply
        finally:
            self._settle_injection(injection, accepted)

    def _reserve_injection(self, operation: str) -> _Injection | Reply | None:
        # Injected errors come first, as an authorisation failure would. A call holds one of the
        # `after` slots while in flight and gives it back unless it is accepted, so no more
        # than `after` calls succeed after inject().
        with self._lock:
            injection = self._injections.get(operation)
            if injection is None:
                return None
            if injection.remaining - injection.reserved <= 0:
                return error_reply(injection.status, injection.code, injection.message)
            injection.reserved += 1
            return injection

    def _settle_injection(self, injection: _Injection | Reply | None, accepted: bool) -> None:
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

    def _draw_fault(self, settings: EmulatorSettings) -> tuple[str, Reply | None] | None:
        if settings.fault_rate <= 0 and settings.drop_rate <= 0:
            return None
        with self._lock:
            draw = self._random.random()
        if draw < settings.fault_rate:
            return "faults", error_reply(500, "InternalErrorException", "Internal error")
        if draw < settings.fault_rate + settings.drop_rate:
            return "dropped", None
        return None

    def _forward(
        self, operation: str, body: bytes, headers: Mapping[str, str], payload: dict[str, Any]
    ) -> tuple[str, Reply]:
        auth = headers.get("Authorization") or auth_header(DEFAULT_REGION)
        plan: UpdatePlan | None = None
        current: dict[str, str] | None = None
        if operation in _USER_OPERATIONS:
            problem = username_problem(payload.get("Username"))
            if problem:
                return "invalid", error_reply(400, "InvalidParameterException", problem)
        if operation in sync_rules.OPERATIONS:  # Cognito's rules where moto differs
            pool = str(payload.get("UserPoolId", ""))
            decision = sync_rules.decide(operation, payload, lambda op, query: self.moto.call(
                op, query, auth), lambda: self._pool_rules(pool, auth))
            plan = UpdatePlan(messages=decision.messages)
            if decision.answer is not None:
                if decision.answer[0] == "accepted":
                    self.stats.add_plan(plan)
                return decision.answer
        if operation == UPDATE:
            rules = self._pool_rules(str(payload.get("UserPoolId", "")), auth)
            attributes = payload.get("UserAttributes")
            if rules is not None and isinstance(attributes, list):
                problems = validate_update(rules, attributes)
                if problems:
                    return "invalid", error_reply(
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
                    return "accepted", json_reply(200, {})
                body = json.dumps({**payload, "UserAttributeNames": keep}).encode()
        sent = {name: headers[name] for name in FORWARDED_HEADERS if name in headers}
        status, data, request_id = self.moto.send(body, sent)
        extra = (("x-amzn-RequestId", request_id),) if request_id else ()
        reply = Reply(status, data, (("Content-Type", JSON_TYPE), *extra))
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


def provisioned_limit(
    payload: Mapping[str, Any], settings: EmulatorSettings
) -> tuple[str, Reply]:
    """GetProvisionedLimit from the configured quotas, in Cognito's response shape."""
    if settings.provisioned_limit == "deny":
        return "errors", error_reply(400, "AccessDeniedException", "User is not authorized to "
                                     "perform: cognito-idp:GetProvisionedLimit")
    if settings.provisioned_limit == "unknown":
        return "errors", error_reply(400, "UnknownOperationException", "")
    definition = payload.get("LimitDefinition")
    attributes = definition.get("Attributes") if isinstance(definition, Mapping) else None
    category = attributes.get("Category") if isinstance(attributes, Mapping) else None
    if not isinstance(definition, Mapping) or definition.get("LimitClass") != "API_CATEGORY":
        problem = "LimitDefinition.LimitClass must be API_CATEGORY"
        return "invalid", error_reply(400, "InvalidParameterException", problem)
    if category not in DEFAULT_QUOTAS:
        return "invalid", error_reply(400, "InvalidParameterException",
                                      f"Unknown API category: {category}")
    rate = settings.quotas.get(str(category), 1_000_000.0)  # no quota configured: unlimited
    definition = {"LimitClass": "API_CATEGORY", "Attributes": {"Category": category}}
    limit = {"LimitDefinition": definition,
             "ProvisionedLimitValue": int(rate),
             "FreeLimitValue": int(DEFAULT_QUOTAS[str(category)])}
    return "accepted", json_reply(200, {"Limit": limit})


def _parse(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body) if body else {}
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}
