"""The Cognito gateway: with `store/s3.py` (S3's), the only modules that import boto3 or botocore.

Every botocore exception becomes one of the project's own errors (``errors.py``) here, with its
code, so nothing above this module knows what a ``ClientError`` is.

Retries: botocore's own are pinned off (``total_max_attempts=1``: one HTTP call per request) and
``retrying.py`` owns retrying. Two retry layers multiply their attempts and hide throttles from
the rate limiter; botocore's default ``legacy`` mode does not even retry
TooManyRequestsException, and ``standard`` wrongly retries LimitExceededException as a throttle.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlparse

import boto3
import botocore.exceptions as bex
import botocore.session
from botocore.config import Config

from batch.errors import (
    CognitoError,
    FatalError,
    TransientError,
    UsageError,
    classify_code,
)

_TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    bex.EndpointConnectionError,
    bex.ConnectionClosedError,
    bex.ReadTimeoutError,
    bex.ConnectTimeoutError,
    bex.ProxyConnectionError,
    bex.HTTPClientError,
)
_CREDENTIAL_ERRORS: tuple[type[Exception], ...] = (
    bex.NoCredentialsError,
    bex.PartialCredentialsError,
    bex.CredentialRetrievalError,
    bex.ProfileNotFound,
    bex.NoRegionError,
    bex.TokenRetrievalError,
)
try:  # newer botocore only
    _CREDENTIAL_ERRORS += (bex.SSOTokenLoadError, bex.UnauthorizedSSOTokenError)
except AttributeError:  # pragma: no cover
    pass
# Raised while the session or client is made: a broken config file, a bad region or endpoint.
_CONFIG_ERRORS: tuple[type[Exception], ...] = (
    bex.ConfigParseError,
    bex.InvalidRegionError,
    bex.InvalidConfigError,
    bex.UnknownCredentialError,
    bex.BotoCoreError,
)

_SETUP_ERRORS: tuple[type[Exception], ...] = (*_CREDENTIAL_ERRORS, *_CONFIG_ERRORS, ValueError)

#: What the project's emulator answers at ``GET /_emulator/identity`` (batch/emulator/front.py
#: serves the same; a test checks they agree). Confirmation is skipped only for an endpoint
#: that says this, never for any loopback address: a localhost tunnel may lead to a real pool.
EMULATOR_IDENTITY_PATH = "/_emulator/identity"
EMULATOR_IDENTITY = {"service": "cognito-batch-emulator"}


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    """Where and as whom to call Cognito."""

    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    max_connections: int = 16
    connect_timeout: float = 5.0
    read_timeout: float = 15.0


def is_local_endpoint(endpoint_url: str | None) -> bool:
    """True for an endpoint on this machine's loopback (the emulator), never a real pool."""
    if not endpoint_url:
        return False
    host = urlparse(endpoint_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def identifies_as_emulator(endpoint_url: str | None, *, timeout: float = 2.0) -> bool:
    """True when a loopback endpoint answers as this project's emulator (its admin API)."""
    if not endpoint_url or not is_local_endpoint(endpoint_url):
        return False
    parts = urlparse(endpoint_url)
    if parts.scheme != "http" or parts.hostname is None:
        return False
    try:
        conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
        try:
            conn.request("GET", EMULATOR_IDENTITY_PATH)
            response = conn.getresponse()
            answer = json.loads(response.read(4096) or b"null")
        finally:
            conn.close()
    except (OSError, ValueError, http.client.HTTPException):
        return False
    return response.status == 200 and answer == EMULATOR_IDENTITY


def _credential_message(exc: Exception, profile: str | None) -> str:
    """Our own words for a credential failure. Never the exception's text: a credential
    helper's (``credential_process``) stderr is in it, and that can hold secrets."""
    who = f"profile {profile!r}" if profile else "the default credential chain"
    if isinstance(exc, bex.NoCredentialsError):
        return f"no AWS credentials found ({who}); see docs/usage.md (Commands)"
    if isinstance(exc, bex.PartialCredentialsError):
        return f"incomplete AWS credentials ({who}): a key without its secret, or the reverse"
    if isinstance(exc, bex.ProfileNotFound):
        name = exc.kwargs.get("profile") or profile
        return f"AWS profile {name!r} not found in the AWS config files"
    if isinstance(exc, bex.NoRegionError):
        return "no AWS region: give --region, or set one in the profile"
    if isinstance(exc, bex.CredentialRetrievalError):
        provider = exc.kwargs.get("provider") or "credential provider"
        return (
            f"AWS credentials for {who} could not be obtained from its {provider} "
            "(its output is not shown: it may hold secrets)"
        )
    return f"AWS credentials for {who} could not be loaded ({type(exc).__name__})"


def _configuration_message(exc: Exception, settings: ConnectionSettings) -> str:
    """One line for an AWS configuration error found while the client is made."""
    if isinstance(exc, _CREDENTIAL_ERRORS):
        return _credential_message(exc, settings.profile)
    if isinstance(exc, bex.ConfigParseError):
        return f"the AWS config file {exc.kwargs.get('path', '')} cannot be parsed"
    if isinstance(exc, bex.InvalidRegionError):
        return f"--region {settings.region!r} is not a region name (like us-east-1)"
    if isinstance(exc, _NotAnEndpoint):
        return (
            f"--endpoint-url {settings.endpoint_url!r} is not a URL "
            "(like http://127.0.0.1:PORT or https://cognito-idp.REGION.amazonaws.com)"
        )
    if isinstance(exc, ValueError):  # a credential helper's output that is not JSON, say
        who = f"profile {settings.profile!r}" if settings.profile else "the default chain"
        return (
            f"AWS credentials for {who} could not be loaded from its "
            f"{_credential_source(settings.profile)}: its answer is not valid credentials "
            f"({type(exc).__name__}; its output is not shown: it may hold secrets)"
        )
    return f"AWS configuration ({type(exc).__name__})"


class _NotAnEndpoint(ValueError):
    """``--endpoint-url`` does not parse as a URL: the one ValueError that names it."""


#: What in a profile supplies its credentials, in the order the SDK's chain tries them.
_SOURCES = ("credential_process", "sso_session", "sso_start_url", "web_identity_token_file",
            "role_arn", "aws_access_key_id")


def _credential_source(profile: str | None) -> str:
    """The setting a profile gets its credentials from (its name, never its value)."""
    try:
        scoped = botocore.session.Session(profile=profile or None).get_scoped_config()
    except Exception:  # noqa: BLE001 - only words for a message
        scoped = {}
    return next((name for name in _SOURCES if name in scoped), "credential source")


def _check_endpoint(url: str | None) -> None:
    if not url:
        return
    parts = urlparse(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
        raise _NotAnEndpoint(url)


def _translate(exc: Exception, operation: str, profile: str | None = None) -> CognitoError:
    if isinstance(exc, bex.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "Unknown")
        message = str(error.get("Message") or "")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return classify_code(code, status)(code, message, operation=operation, status=status)
    if isinstance(exc, _TRANSPORT_ERRORS):
        return TransientError(type(exc).__name__, str(exc), operation=operation)
    if isinstance(exc, _CREDENTIAL_ERRORS):
        return FatalError(type(exc).__name__, _credential_message(exc, profile),
                          operation=operation)
    if isinstance(exc, bex.ParamValidationError):
        # botocore refused the request before sending it: the row's data is at fault.
        return classify_code("InvalidParameterException")(
            "InvalidParameterException", " ".join(str(exc).split()), operation=operation
        )
    return TransientError(type(exc).__name__, str(exc), operation=operation)


class CognitoGateway:
    """Thin, thread-safe wrapper over one ``cognito-idp`` client."""

    def __init__(self, settings: ConnectionSettings, *, client: Any = None) -> None:
        self.settings = settings
        self._client = client if client is not None else self._make_client(settings)

    @staticmethod
    def _make_client(settings: ConnectionSettings) -> Any:
        config = Config(
            retries={"mode": "standard", "total_max_attempts": 1},
            max_pool_connections=settings.max_connections,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            tcp_keepalive=True,
        )
        local = is_local_endpoint(settings.endpoint_url)
        try:
            _check_endpoint(settings.endpoint_url)
            if local and not settings.profile:
                # A loopback endpoint gets dummy credentials: the emulator checks no signature,
                # and whatever else listens there (a tunnel, another tool) must never receive
                # real ones. An explicit --profile is the operator's choice to send them.
                session = boto3.session.Session(
                    aws_access_key_id="local", aws_secret_access_key="local"
                )
            else:
                session = boto3.session.Session(profile_name=settings.profile or None)
            region = settings.region or session.region_name
            if not region and local:
                region = "us-east-1"
            return session.client(
                "cognito-idp",
                region_name=region,
                endpoint_url=settings.endpoint_url or None,
                config=config,
            )
        except _SETUP_ERRORS as exc:
            raise UsageError(
                f"AWS configuration: {_configuration_message(exc, settings)}"
            ) from None

    @property
    def region(self) -> str:
        return str(self._client.meta.region_name)

    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        method = getattr(self._client, operation)
        try:
            result: dict[str, Any] = method(**params)
        except Exception as exc:  # noqa: BLE001 - translated at this boundary
            raise _translate(exc, operation, self.settings.profile) from exc
        return result

    # -- writes ------------------------------------------------------------------------------

    def update_user_attributes(
        self,
        user_pool_id: str,
        username: str,
        attributes: Sequence[tuple[str, str]],
        *,
        client_metadata: Mapping[str, str] | None = None,
    ) -> None:
        params: dict[str, Any] = {
            "UserPoolId": user_pool_id,
            "Username": username,
            "UserAttributes": [{"Name": n, "Value": v} for n, v in attributes],
        }
        if client_metadata:
            params["ClientMetadata"] = dict(client_metadata)
        self._call("admin_update_user_attributes", **params)

    def delete_user_attributes(
        self, user_pool_id: str, username: str, names: Sequence[str]
    ) -> None:
        self._call(
            "admin_delete_user_attributes",
            UserPoolId=user_pool_id,
            Username=username,
            UserAttributeNames=list(names),
        )

    def create_user(
        self,
        user_pool_id: str,
        username: str,
        attributes: Sequence[tuple[str, str]],
        *,
        invite: bool = False,
        client_metadata: Mapping[str, str] | None = None,
    ) -> None:
        """AdminCreateUser. No message by default (``MessageAction=SUPPRESS``); ``invite``
        lets Cognito send its invitation, by email when the user has an email, else by SMS
        when a phone number. No ``TemporaryPassword`` is ever sent: Cognito makes one up and
        delivers it only in the invitation, so none can reach a log, the journal or a report.
        An existing username is ``UsernameExistsException``, a ``RowError``."""
        params: dict[str, Any] = {
            "UserPoolId": user_pool_id,
            "Username": username,
            "UserAttributes": [{"Name": n, "Value": v} for n, v in attributes],
        }
        if invite:
            names = {n for n, _ in attributes}
            mediums = ["EMAIL"] if "email" in names else ["SMS"] if "phone_number" in names else []
            if mediums:
                params["DesiredDeliveryMediums"] = mediums
        else:
            params["MessageAction"] = "SUPPRESS"
        if client_metadata:
            params["ClientMetadata"] = dict(client_metadata)
        self._call("admin_create_user", **params)

    def disable_user(self, user_pool_id: str, username: str) -> None:
        """AdminDisableUser: the user can no longer sign in; Cognito revokes its access
        tokens (not its refresh tokens: see docs/sync.md)."""
        self._call("admin_disable_user", UserPoolId=user_pool_id, Username=username)

    def enable_user(self, user_pool_id: str, username: str) -> None:
        self._call("admin_enable_user", UserPoolId=user_pool_id, Username=username)

    def add_user_to_group(self, user_pool_id: str, username: str, group: str) -> None:
        """AdminAddUserToGroup. A missing group is ResourceNotFoundException (fatal: the plan
        checked every group before the first write, so the pool changed under the run)."""
        self._call("admin_add_user_to_group", UserPoolId=user_pool_id, Username=username,
                   GroupName=group)

    def remove_user_from_group(self, user_pool_id: str, username: str, group: str) -> None:
        self._call("admin_remove_user_from_group", UserPoolId=user_pool_id, Username=username,
                   GroupName=group)

    # -- reads -------------------------------------------------------------------------------

    def get_provisioned_limit(self, category: str) -> tuple[int, int]:
        """The enforced and the free (no-cost) rate of an API category, requests/s
        (GetProvisionedLimit's ``ProvisionedLimitValue`` and ``FreeLimitValue``)."""
        answer = self._call(
            "get_provisioned_limit",
            LimitDefinition={"LimitClass": "API_CATEGORY", "Attributes": {"Category": category}},
        )
        limit = answer["Limit"]
        return int(limit["ProvisionedLimitValue"]), int(limit["FreeLimitValue"])

    def describe_user_pool(self, user_pool_id: str) -> dict[str, Any]:
        pool: dict[str, Any] = self._call("describe_user_pool", UserPoolId=user_pool_id)["UserPool"]
        return pool

    def get_user(self, user_pool_id: str, username: str) -> dict[str, str]:
        """The user's attributes by name (``username`` included), via AdminGetUser, with its
        state under ``USER_STATE``'s keys (no attribute can have those names)."""
        answer = self._call("admin_get_user", UserPoolId=user_pool_id, Username=username)
        attrs = {a["Name"]: a.get("Value", "") for a in answer.get("UserAttributes", [])}
        attrs["username"] = answer["Username"]
        attrs.update(user_state(answer))
        return attrs

    def delete_user(self, user_pool_id: str, username: str) -> None:
        """AdminDeleteUser (UserUpdate): only undo's, of a user its run created."""
        self._call("admin_delete_user", UserPoolId=user_pool_id, Username=username)

    def list_users_page(
        self,
        user_pool_id: str,
        *,
        pagination_token: str | None = None,
        filter_expression: str | None = None,
        limit: int = 60,
        attributes_to_get: Sequence[str] | None = None,
    ) -> tuple[list[dict[str, str]], str | None]:
        """One ListUsers page: users as attribute maps (``username`` included), next token.
        ``attributes_to_get`` (AttributesToGet) makes Cognito send only those attributes."""
        params: dict[str, Any] = {"UserPoolId": user_pool_id, "Limit": limit}
        if pagination_token:
            params["PaginationToken"] = pagination_token
        if filter_expression:
            params["Filter"] = filter_expression
        if attributes_to_get:
            params["AttributesToGet"] = list(attributes_to_get)
        answer = self._call("list_users", **params)
        users = []
        for user in answer.get("Users", []):
            attrs = {a["Name"]: a.get("Value", "") for a in user.get("Attributes", [])}
            attrs["username"] = user["Username"]
            attrs.update(user_state(user))
            users.append(attrs)
        return users, answer.get("PaginationToken")

    def list_groups_for_user_page(
        self, user_pool_id: str, username: str, *, next_token: str | None = None,
        limit: int = 60,
    ) -> tuple[list[str], str | None]:
        """One AdminListGroupsForUser page (UserResourceRead): group names, next token."""
        params: dict[str, Any] = {"UserPoolId": user_pool_id, "Username": username,
                                  "Limit": limit}
        if next_token:
            params["NextToken"] = next_token
        answer = self._call("admin_list_groups_for_user", **params)
        return [g["GroupName"] for g in answer.get("Groups", [])], answer.get("NextToken")

    def list_users_in_group_page(
        self, user_pool_id: str, group: str, *, next_token: str | None = None, limit: int = 60
    ) -> tuple[list[str], str | None]:
        """One ListUsersInGroup page (UserList): usernames, next token."""
        params: dict[str, Any] = {"UserPoolId": user_pool_id, "GroupName": group, "Limit": limit}
        if next_token:
            params["NextToken"] = next_token
        answer = self._call("list_users_in_group", **params)
        return [u["Username"] for u in answer.get("Users", [])], answer.get("NextToken")

    def list_groups_page(
        self, user_pool_id: str, *, next_token: str | None = None, limit: int = 60
    ) -> tuple[list[str], str | None]:
        """One ListGroups page (UserPoolResourceRead): group names, next token."""
        params: dict[str, Any] = {"UserPoolId": user_pool_id, "Limit": limit}
        if next_token:
            params["NextToken"] = next_token
        answer = self._call("list_groups", **params)
        return [g["GroupName"] for g in answer.get("Groups", [])], answer.get("NextToken")

    def list_groups_for_user(self, user_pool_id: str, username: str) -> list[str]:
        """Every group of a user, sorted (Cognito's order is not guaranteed; moto's varies)."""
        return sorted(_all_pages(lambda t: self.list_groups_for_user_page(
            user_pool_id, username, next_token=t)))

    def list_users_in_group(self, user_pool_id: str, group: str) -> list[str]:
        """Every member's username, in Cognito's order."""
        return _all_pages(lambda t: self.list_users_in_group_page(user_pool_id, group,
                                                                  next_token=t))

    def list_groups(self, user_pool_id: str) -> list[str]:
        """Every group name of the pool, sorted."""
        return sorted(_all_pages(lambda t: self.list_groups_page(user_pool_id, next_token=t)))


#: A user's state beside its attributes in a read user's map: AdminGetUser's and ListUsers'
#: ``Enabled``, ``UserStatus``, ``UserCreateDate`` and ``UserLastModifiedDate`` (the sync's
#: enabled column, and undo's check that a user the run created has not changed since).
USER_STATE = {"Enabled": "@enabled", "UserStatus": "@status", "UserCreateDate": "@created",
              "UserLastModifiedDate": "@modified"}


def user_state(answer: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for field, key in USER_STATE.items():
        value = answer.get(field)
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, datetime):
            out[key] = value.isoformat()
        elif value is not None:
            out[key] = str(value)
    return out


def _all_pages(page: Callable[[str | None], tuple[list[str], str | None]]) -> list[str]:
    """Every page, unpaced; callers that pace each call use the ``_page`` methods."""
    out: list[str] = []
    token: str | None = None
    while True:
        items, token = page(token)
        out.extend(items)
        if not token:
            return out
