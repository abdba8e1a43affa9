"""The RateLimit-Policy and RateLimit response fields (draft-ietf-httpapi-ratelimit-headers).

Structured fields, one List item per policy, named by a String:

    RateLimit-Policy: "writes";q=120;w=60
    RateLimit: "writes";r=117;t=58

`q` requests are allowed in any `w` seconds; `r` more fit in the next `t` seconds, when the oldest
request counted leaves the window (the limits are moving windows, so the allowance comes back one
request at a time). A request counted against several rules (a sign-in: per address and per
account) lists each. On a 429 the rule that refused has `r=0`, and `Retry-After` is its `t`.

The fields are on every answer to a request that was counted (or refused) by a limit, whatever
its status: the rate limiter notes what it counted in ``keel.core.ratelimit.usage_var``, which the
request middleware sets for each request and reads when the answer starts.
"""

from __future__ import annotations

from collections.abc import Mapping

from keel.core.ratelimit import Rule, RuleUsage

POLICY_FIELD = "RateLimit-Policy"
LIMIT_FIELD = "RateLimit"


class CountsTowardsRateLimits:
    """Base of a dependency that counts its request against a rate limit.

    The OpenAPI document declares the RateLimit fields on every answer of an operation whose
    dependencies include one (keel.http.openapi).
    """


def fields(usage: Mapping[Rule, RuleUsage]) -> list[tuple[bytes, bytes]]:
    """The two fields for what one request was counted against; none when it was counted against nothing."""
    if not usage:
        return []
    policies = [policy for rule in usage.values() for policy in rule.policies]
    if not policies:
        return []
    limits = [rule for rule in usage.values() if rule.tightest is not None]
    found = [(POLICY_FIELD, ", ".join(f'"{p.name}";q={p.quota};w={p.window}' for p in policies))]
    if limits:
        found.append(
            (
                LIMIT_FIELD,
                ", ".join(
                    f'"{rule.tightest.name}";r={rule.remaining};t={rule.reset_seconds}'
                    for rule in limits
                    if rule.tightest is not None
                ),
            )
        )
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in found]
