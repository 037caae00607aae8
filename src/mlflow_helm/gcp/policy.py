"""IAM policy read-modify-write, the same for projects, service accounts and buckets.

get → modify → set with the etag the read returned and `requestedPolicyVersion: 3`; a 409
(IAM, Resource Manager) or 412 (GCS) means someone else wrote in between, so the whole cycle
runs again on a fresh read. The write is skipped when the member is already bound, and
other bindings (conditional ones included) are passed back untouched.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from ..retry import RetryPolicy, retrying
from . import conflict

Policy = dict


def has_member(policy: Policy, role: str, member: str) -> bool:
    return any(
        b.get("role") == role and member in b.get("members", []) and not b.get("condition")
        for b in policy.get("bindings", [])
    )


def with_member(policy: Policy, role: str, member: str) -> Policy:
    new = copy.deepcopy(policy)
    bindings = new.setdefault("bindings", [])
    for binding in bindings:
        if binding.get("role") == role and not binding.get("condition"):
            binding["members"] = sorted({*binding.get("members", []), member})
            break
    else:
        bindings.append({"role": role, "members": [member]})
    # Writing a policy that holds conditions needs version 3; 3 is valid for any policy.
    new["version"] = 3
    return new


def without_member(policy: Policy, role: str, member: str) -> Policy:
    new = copy.deepcopy(policy)
    kept = []
    for binding in new.get("bindings", []):
        if binding.get("role") == role and not binding.get("condition"):
            binding["members"] = [m for m in binding.get("members", []) if m != member]
            if not binding["members"]:
                continue
        kept.append(binding)
    new["bindings"] = kept
    new["version"] = 3
    return new


def ensure_member(
    get: Callable[[], Policy],
    set_: Callable[[Policy], object],
    role: str,
    member: str,
    retry: RetryPolicy,
    what: str,
    present: bool = True,
) -> bool:
    """Bind (or unbind) member to role; True when a write happened."""

    def cycle() -> bool:
        policy = get()
        if has_member(policy, role, member) == present:
            return False
        set_(with_member(policy, role, member) if present
             else without_member(policy, role, member))
        return True

    return retrying(cycle, conflict, retry, f"set IAM policy of {what}", attempts=10)
