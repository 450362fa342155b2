"""The enforced request quotas (GetProvisionedLimit) and the share of them a run takes.

Cognito's quotas are per account and region, shared by every application there. The job reads
what Cognito enforces for the categories it calls (UserUpdate for AdminUpdateUserAttributes /
AdminDeleteUserAttributes; UserRead for AdminGetUser and UserList for ListUsers when it reads
users), so headroom under the quota can be exact instead of guessed. The call needs the IAM
action ``cognito-idp:GetProvisionedLimit``; when that is denied, or the endpoint (an older
region build, an emulator) does not know the operation, the job falls back to Cognito's
documented defaults and says which in the plan and the summary.

``ProvisionedLimitValue`` is the rate Cognito enforces; ``FreeLimitValue`` is the part of it
included at no extra cost (not the part other applications leave unused: that one no API
tells, the rate controller finds it).
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from batch.errors import CognitoError

#: Cognito's documented default rates (requests/s) of the categories the job uses.
#: Source: "Quotas in Amazon Cognito", operations by category
#: (https://docs.aws.amazon.com/cognito/latest/developerguide/quotas.html).
DEFAULT_QUOTAS: dict[str, float] = {
    "UserUpdate": 25.0, "UserRead": 120.0, "UserList": 30.0, "UserCreation": 50.0,
    "UserResourceRead": 50.0, "UserPoolResourceRead": 20.0,
}
#: The job's operations and the category each one draws from (same source).
CATEGORY_OF = {"AdminUpdateUserAttributes": "UserUpdate", "AdminDeleteUserAttributes": "UserUpdate",
               "AdminGetUser": "UserRead", "ListUsers": "UserList",
               "AdminCreateUser": "UserCreation", "AdminDisableUser": "UserUpdate",
               "AdminEnableUser": "UserUpdate", "AdminAddUserToGroup": "UserUpdate",
               "AdminRemoveUserFromGroup": "UserUpdate", "AdminDeleteUser": "UserUpdate",
               "AdminListGroupsForUser": "UserResourceRead", "ListUsersInGroup": "UserList",
               "ListGroups": "UserPoolResourceRead"}

_DENIED = frozenset({"AccessDeniedException", "AccessDenied", "NotAuthorizedException",
                     "UnauthorizedOperation", "UnrecognizedClientException"})
_UNKNOWN = frozenset({"UnknownOperationException", "InvalidAction", "UnknownOperation",
                      "NotImplemented", "OperationNotSupported"})


class LimitReader(Protocol):
    """What reading a quota needs: the gateway, or a fake."""

    def get_provisioned_limit(self, category: str) -> tuple[int, int]: ...


@dataclass(frozen=True, slots=True)
class Quotas:
    """Requests/s per category, and where they came from."""

    rates: dict[str, float]
    free: dict[str, float]  # FreeLimitValue (no-cost part), when read
    source: str  # "read from GetProvisionedLimit" or "defaults: GetProvisionedLimit <why>"

    @property
    def known(self) -> bool:
        """True when the rates were read, not assumed."""
        return self.source.startswith("read")

    @property
    def update(self) -> float:
        return self.rates["UserUpdate"]

    @property
    def enforced(self) -> float:
        """The UserUpdate calls/s when read, 0 when only assumed (the progress line's share)."""
        return self.update if self.known else 0.0

    def public(self) -> dict[str, object]:
        return {"rates": dict(self.rates), "free_limit": dict(self.free), "source": self.source}


def default_quotas(why: str) -> Quotas:
    return Quotas(dict(DEFAULT_QUOTAS), {}, f"defaults: GetProvisionedLimit {why}")


def _ask(reader: LimitReader, category: str) -> tuple[int, int]:
    return reader.get_provisioned_limit(category)


def read_quotas(reader: LimitReader, categories: Iterable[str] = ("UserUpdate",)) -> Quotas:
    """The enforced rate of each category; Cognito's defaults when the call is denied or
    unknown (then for every category: one denial answers for all)."""
    rates = dict(DEFAULT_QUOTAS)
    free: dict[str, float] = {}
    wanted = list(dict.fromkeys(("UserUpdate", *categories)))
    # Side by side: at 1 s an answer, one after another cost a second each before the first
    # write. The answers are weighed in order, as before: the first failure decides.
    with ThreadPoolExecutor(max_workers=len(wanted),
                            thread_name_prefix="cognito-batch-quota") as pool:
        # Looked up in the thread: a reader without the method answers AttributeError there.
        answers = [pool.submit(_ask, reader, c) for c in wanted]
    for category, answer in zip(wanted, answers, strict=True):
        try:
            enforced, no_cost = answer.result()
        except AttributeError:  # a botocore without the operation
            return default_quotas("unknown to this botocore")
        except (KeyError, TypeError, ValueError):  # an answer not in the service model's shape
            return default_quotas("answered in an unknown shape")
        except CognitoError as exc:
            if exc.code in _DENIED or exc.status in (401, 403):
                return default_quotas("denied")
            if exc.code in _UNKNOWN or exc.status == 404:
                return default_quotas("unknown to the endpoint")
            return default_quotas(f"failed ({exc.code})")
        if enforced <= 0:
            return default_quotas("answered no rate")
        rates[category] = float(enforced)
        free[category] = float(no_cost)
    return Quotas(rates, free, "read from GetProvisionedLimit")
