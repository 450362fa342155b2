"""What a report may say about an error: the code always, Cognito's message only in a known shape.

Cognito's messages sometimes quote what was sent ("Invalid email address format: <value>",
a Lambda trigger's own text, botocore's "value: ..." for a parameter of the wrong type), and
attribute values are personal data that never go into a report or a log.

Why an allow-list and not a better scrubber: a scrubber must recognise every way a server may
echo a value - case-folded, whitespace collapsed, cut short, escaped, quoted in part, two
characters long - and it knows only the values this row sent, not what a trigger adds. When it
misses, it fails silently and the report leaks. An allow-list fails safe: a message whose
shape is not known keeps its error code and gets our own words instead, so an unknown shape
costs some detail, never a value. The shapes below hold only fixed words, small numbers
(constraints, counts) and attribute names; a name must be one this row sent, so even the
name slot cannot carry a value.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from batch.errors import CognitoError
from batch.models import RowResult, UserUpdate

_NAME = r"(?P<name>(?:dev:)?(?:custom:)?[A-Za-z0-9_:.-]{1,64})"
_NUM = r"\d{1,5}"
_USER_NAME = rf"user\.{_NAME}: "
_INVALID_PARAMETER = [
    rf"{_USER_NAME}Attribute does not exist in the schema\.",
    rf"Cannot modify the non-mutable attribute {_NAME}",
    rf"{_USER_NAME}Required attribute cannot be deleted\.",
    rf"{_USER_NAME}Birthdate must be in the format YYYY-MM-DD\.",
    rf"{_USER_NAME}Boolean attribute value must be 'true' or 'false'\.",
    rf"{_USER_NAME}DateTime attribute value is not a valid date and time\.",
    rf"{_USER_NAME}String must be no longer than {_NUM} characters\.",
    rf"{_USER_NAME}String must be at least {_NUM} characters long\.",
    rf"{_USER_NAME}Number attribute value must be an integer\.",
    rf"{_USER_NAME}Number must be (?:at least|at most) -?{_NUM}\.",
    r"Invalid email address format\.",
    r"Invalid phone number format\.",
    r"Invalid (?:email|phone number) address\.?",
    # Model constraints (the emulator and AWS word them alike).
    rf"{_NUM} validation errors? detected: (?:Value at '[A-Za-z.]+(?:\.{_NUM}\.member)?"
    rf"(?:\.(?:name|value))?' failed to satisfy constraint: Member must (?:have length "
    rf"(?:less than or equal to {_NUM}|between {_NUM} and {_NUM})|satisfy regular "
    r"expression pattern: \[\\p\{L\}\\p\{M\}\\p\{S\}\\p\{N\}\\p\{P\}\]\+)(?:; )?)+",
]
_TRANSPORT = [
    r"(?:Could not connect to the endpoint URL|Connect timeout on endpoint URL|Read timeout on "
    r"endpoint URL|Connection was closed before we received a valid response from endpoint "
    r'URL): "[^"\s]{1,300}"\.?',
]
_SAFE: dict[str, list[str]] = {
    "UserNotFoundException": [r"User does not exist\."],
    "InvalidParameterException": _INVALID_PARAMETER,
    "AliasExistsException": [r"An account with the given (?:email|phone_number) already exists\."],
    "TooManyRequestsException": [r"Rate exceeded", r"Too many requests"],
    "InternalErrorException": [r"Internal (?:server )?error\.?", r"An internal error occurred\.?"],
    "ResourceNotFoundException": [r"User pool [\w-]{1,50}_[0-9a-zA-Z]{1,50} does not exist\."],
    "NotAuthorizedException": [r"Access to user pool is not allowed\.?"],
    "LimitExceededException": [r"Exceeded daily email limit for the operation or the account\."
                               r"(?: If a higher limit is required, please configure your user "
                               r"pool to use your own Amazon SES configuration for sending "
                               r"email\.)?"],
    **{code: _TRANSPORT for code in ("EndpointConnectionError", "ConnectTimeoutError",
                                      "ReadTimeoutError", "ConnectionClosedError")},
}
_COMPILED = {code: [re.compile(p) for p in shapes] for code, shapes in _SAFE.items()}

#: Our own words, where Cognito's message is not kept.
OWN_WORDS = {
    "UserNotFoundException": "no such user in the pool",
    "InvalidParameterException": "Cognito refused a parameter of this update",
    "AliasExistsException": "the new email or phone number is already another user's",
    "UserLambdaValidationException": "a Lambda trigger refused the update",
    "UnexpectedLambdaException": "a Lambda trigger failed",
    "InvalidLambdaResponseException": "a Lambda trigger answered something Cognito refused",
    "CodeDeliveryFailureException": "the verification message could not be delivered",
    "InvalidUserPoolConfigurationException": "the pool is not configured for this update",
    "TooManyRequestsException": "over the request-rate quota",
    "InternalErrorException": "a Cognito service fault",
    "NotAuthorizedException": "not authorized",
    "AccessDeniedException": "access denied (IAM permissions)",
    "ResourceNotFoundException": "the user pool does not exist",
    "LimitExceededException": "a Cognito message or resource limit was reached",
}
WITHHELD = "Cognito's message is not kept: it may quote a value"


def safe_message(code: str, message: str, names: Collection[str] = ()) -> str:
    """``message`` if it is, line by line, one of the known shapes for ``code`` (any attribute
    name in it one of ``names``), else our own words for the code."""
    shapes = _COMPILED.get(code, ())
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if lines and shapes and all(_known(line, shapes, names) for line in lines):
        return "; ".join(lines)
    own = OWN_WORDS.get(code)
    return f"{own} ({WITHHELD})" if own else WITHHELD


def _known(line: str, shapes: Collection[re.Pattern[str]], names: Collection[str]) -> bool:
    for shape in shapes:
        match = shape.fullmatch(line)
        if match is not None:
            name = match.groupdict().get("name")
            if name is None or name in names or name.removeprefix("dev:") in names:
                return True
    return False


def report_message(error: BaseException, update: UserUpdate | None = None) -> str:
    """The report's ``error_message`` for an error that ended a row (never a value)."""
    if isinstance(error, CognitoError):
        names: set[str] = set()
        if update is not None:
            names.update(name for name, _ in update.attributes)
            names.update(update.deletes)
        return safe_message(error.code, error.message, names)
    # Not an answer from Cognito: our own failure, whose text may hold anything (a KeyError
    # names its key, which may be a value).
    return f"unexpected {type(error).__name__}"


_PHONE = re.compile(r"\+\d{6,15}")


class KeyHint:
    """Notices rows that fail as UserNotFoundException while their usernames look like emails
    or phone numbers: the key column probably holds those, and ``--key`` was not given. Said
    once, at the end, with a count (never a username)."""

    def __init__(self, key: str) -> None:
        self.active = key == "username"
        self.emails = 0
        self.phones = 0

    def add(self, result: RowResult) -> None:
        if not self.active or result.error_code != "UserNotFoundException":
            return
        if "@" in result.username:
            self.emails += 1
        elif _PHONE.fullmatch(result.username):
            self.phones += 1

    def text(self) -> str:
        if self.emails >= self.phones and self.emails:
            count, what, key = self.emails, "emails", "email"
        elif self.phones:
            count, what, key = self.phones, "phone numbers", "phone_number"
        else:
            return ""
        return (
            f"{count} rows failed with UserNotFoundException and their usernames look like "
            f"{what}: if the key column holds {what}, rerun with --key {key}"
        )
