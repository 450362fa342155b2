"""Cognito's rules for the sync's operations where moto differs (moto 5.2.6).

- AdminCreateUser with an existing username: Cognito answers ``UsernameExistsException``;
  with ``MessageAction=RESEND`` it resends the invitation of a user still in
  FORCE_CHANGE_PASSWORD and keeps the user. moto *replaces* the user on RESEND (new ``sub``,
  attributes and group links lost), so the front answers RESEND itself and never forwards it.
- AdminCreateUser's attributes and username are checked as Cognito would (moto checks none).
- An invitation (no ``MessageAction=SUPPRESS``) is counted as a message per delivery medium
  (Cognito's default medium is SMS), so a test can tell ``--invite`` from the default.

Adding to or removing from a group that does not exist is already ``ResourceNotFoundException``
in moto (``get_group``); the front forwards those unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from batch.emulator.rules import PoolRules, username_problem, validate_update
from batch.emulator.server import EmulatorError, Reply, error_reply, json_reply

CREATE = "AdminCreateUser"
OPERATIONS = frozenset({CREATE})
_MEDIUMS = {"EMAIL": "email", "SMS": "sms"}

MotoCall = Callable[[str, Mapping[str, Any]], dict[str, Any]]


@dataclass
class Decision:
    """What the front does with one call: answer it now (``answer``), or forward it; the
    messages Cognito would send once it is accepted."""

    answer: tuple[str, Reply] | None = None
    messages: dict[str, int] = field(default_factory=dict)


def decide(
    operation: str,
    payload: Mapping[str, Any],
    call: MotoCall,
    rules: Callable[[], PoolRules | None],
) -> Decision:
    """The front's decision for an operation in ``OPERATIONS``."""
    if operation != CREATE:
        return Decision()
    username = payload.get("Username")
    problem = username_problem(username)
    if problem:
        return Decision(("invalid", error_reply(400, "InvalidParameterException", problem)))
    attributes = payload.get("UserAttributes") or []
    pool_rules = rules()
    if pool_rules is not None and isinstance(attributes, list):
        problems = validate_update(pool_rules, attributes, creating=True)
        if problems:
            reply = error_reply(400, "InvalidParameterException", "\n".join(problems))
            return Decision(("invalid", reply))
    messages = invitation_messages(payload)
    query = {"UserPoolId": payload.get("UserPoolId"), "Username": username}
    try:
        existing = call("AdminGetUser", query)
    except EmulatorError:
        return Decision(messages=messages)  # no such user (or pool): moto answers the create
    if payload.get("MessageAction") != "RESEND":
        reply = error_reply(400, "UsernameExistsException", "User account already exists")
        return Decision(("errors", reply))
    if existing.get("UserStatus") != "FORCE_CHANGE_PASSWORD":
        reply = error_reply(400, "UnsupportedUserStateException",
                            "Resend not possible. User is in an unsupported state.")
        return Decision(("errors", reply))
    return Decision(("accepted", json_reply(200, {"User": as_user(existing)})), messages)


def invitation_messages(payload: Mapping[str, Any]) -> dict[str, int]:
    """The invitation messages an AdminCreateUser call sends: none with SUPPRESS."""
    if payload.get("MessageAction") == "SUPPRESS":
        return {}
    mediums = payload.get("DesiredDeliveryMediums") or ["SMS"]
    out: dict[str, int] = {}
    for medium in mediums:
        channel = _MEDIUMS.get(str(medium))
        if channel:
            out[channel] = out.get(channel, 0) + 1
    return out


def as_user(answer: Mapping[str, Any]) -> dict[str, Any]:
    """AdminGetUser's answer in AdminCreateUser's ``User`` shape."""
    user = {k: v for k, v in answer.items() if k not in ("UserAttributes", "ResponseMetadata")}
    user["Attributes"] = list(answer.get("UserAttributes") or [])
    return user
