"""The OpenAPI document as client generators read it: chosen names, declared headers, clean enums.

Generated clients take their method and model names from `operationId` and the component names,
so both are chosen by hand here rather than derived from the function and the path
(`create_todo_api_v1_todos_post`). An operation is named `<tag>_<verb>`; a route with no name
in `OPERATION_IDS` stops the app from starting, so no route ships with a made-up one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from fastapi.utils import generate_unique_id
from starlette.routing import BaseRoute

from keel.http.rate_limit_fields import LIMIT_FIELD, POLICY_FIELD, CountsTowardsRateLimits
from keel.schemas.common import Problem, problem_responses
from keel.schemas.mfa import MfaRequiredProblem

BEARER_SCHEME = "BearerToken"

# Route (its function's name) -> operationId. Keep in step with API.md's "<tag>_<verb>" rule.
OPERATION_IDS = {
    # auth
    "register": "auth_register",
    "login": "auth_login",
    "refresh": "auth_refresh",
    "logout": "auth_logout",
    "logout_all": "auth_logout_all",
    "list_sessions": "auth_sessions_list",
    "revoke_session": "auth_sessions_revoke",
    "change_password": "auth_password_change",
    "request_verification": "auth_verify_email_request",
    "confirm_verification": "auth_verify_email_confirm",
    "check_password": "auth_password_check",
    "request_password_reset": "auth_password_reset_request",
    "confirm_password_reset": "auth_password_reset_confirm",
    "request_email_code": "auth_email_code_request",
    "verify_email_code": "auth_email_code_verify",
    # mfa
    "mfa_status": "mfa_status",
    "totp_setup": "mfa_totp_setup",
    "totp_confirm": "mfa_totp_confirm",
    "totp_disable": "mfa_totp_disable",
    "recovery_codes_regenerate": "mfa_recovery_codes_regenerate",
    "reauthenticate": "mfa_reauthenticate",
    "mfa_verify": "mfa_verify",
    "reset_user_mfa": "admin_users_mfa_reset",
    # provider sign-in and linked identities
    "list_providers": "auth_providers_list",
    "oidc_authorize": "auth_oidc_authorize",
    "oidc_callback": "auth_oidc_callback",
    "list_identities": "auth_identities_list",
    "link_identity": "auth_identities_link",
    "confirm_identity_link": "auth_identities_confirm",
    "unlink_identity": "auth_identities_unlink",
    # passkeys
    "passkey_registration_options": "passkeys_register_options",
    "register_passkey": "passkeys_register",
    "list_passkeys": "passkeys_list",
    "rename_passkey": "passkeys_update",
    "delete_passkey": "passkeys_delete",
    "passkey_authentication_options": "passkeys_authenticate_options",
    "authenticate_with_passkey": "passkeys_authenticate",
    "passkey_reauthentication_options": "passkeys_reauthenticate_options",
    "reauthenticate_with_passkey": "passkeys_reauthenticate",
    # users
    "read_me": "users_me_get",
    "update_me": "users_me_update",
    "delete_me": "users_me_delete",
    "read_user": "users_get",
    # personal access tokens
    "create_personal_token": "tokens_create",
    "list_personal_tokens": "tokens_list",
    "revoke_personal_token": "tokens_revoke",
    "list_my_activity": "users_me_activity_list",
    # todos
    "create_todo": "todos_create",
    "list_todos": "todos_list",
    "read_todo": "todos_get",
    "update_todo": "todos_update",
    "delete_todo": "todos_delete",
    # shared lists
    "create_list": "lists_create",
    "list_lists": "lists_list",
    "read_list": "lists_get",
    "update_list": "lists_update",
    "delete_list": "lists_delete",
    "list_members": "lists_members_list",
    "add_member": "lists_members_add",
    "update_member": "lists_members_update",
    "remove_member": "lists_members_remove",
    # live updates
    "stream_events": "events_stream",
    "create_event_ticket": "events_create_ticket",
    # posts
    "create_post": "posts_create",
    "list_feed": "posts_list",
    "list_mine": "posts_list_mine",
    "read_post": "posts_get",
    "update_post": "posts_update",
    "delete_post": "posts_delete",
    "vote": "posts_vote",
    "unvote": "posts_unvote",
    "preview_post": "posts_preview",
    "list_tags": "tags_list",
    "list_comments": "comments_list",
    "create_comment": "comments_create",
    "update_comment": "comments_update",
    "delete_comment": "comments_delete",
    # admin
    "list_users": "admin_users_list",
    "update_user": "admin_users_update",
    "delete_user": "admin_users_delete",
    "list_user_activity": "admin_users_activity_list",
    # operations
    "health": "operations_health",
    "ready": "operations_ready",
    "metrics": "operations_metrics",
}

# FastAPI names a form or multi-part body model after the operation ("Body_auth_login").
BODY_NAMES = {"Body_auth_login": "LoginForm"}

# OpenAPI links from a create to what can be done with what it made, so a client (or schemathesis'
# stateful runs) can follow create -> get -> update -> delete without guessing.
LINKS = {
    "todos_create": ("todo_id", ["todos_get", "todos_update", "todos_delete"]),
    "lists_create": (
        "list_id",
        ["lists_get", "lists_update", "lists_delete", "lists_members_list", "lists_members_add"],
    ),
    "posts_create": ("post_id", ["posts_get", "posts_update", "posts_delete", "posts_vote", "posts_unvote"]),
}

REQUEST_ID_HEADER = {
    "description": "This request's id: the `X-Request-ID` the client sent if it was 1-128 characters "
    "of `A-Za-z0-9._:@/+=-`, else one made here. Every log line of the request carries it.",
    "schema": {"type": "string"},
}
RETRY_AFTER_HEADER = {
    "description": "Seconds to wait before trying again.",
    "schema": {"type": "integer", "minimum": 1},
}
RATE_LIMIT_POLICY_HEADER = {
    "description": 'The rate limits this request was counted against, each as `"<name>";q=<requests>;w=<seconds>`: '
    "`q` requests in any `w` seconds (draft-ietf-httpapi-ratelimit-headers). On every answer to a request "
    "that was counted or refused by a limit, whatever its status.",
    "schema": {"type": "string"},
    "example": '"writes";q=120;w=60',
}
RATE_LIMIT_HEADER = {
    "description": 'What is left of each of those limits, as `"<name>";r=<requests>;t=<seconds>`: `r` more requests '
    "fit in the next `t` seconds (of several limits of one rule, the one with the least left). On a 429 the "
    "limit that refused has `r=0`, and `Retry-After` is its `t`.",
    "schema": {"type": "string"},
    "example": '"writes";r=117;t=58',
}
WWW_AUTHENTICATE_HEADER = {
    "description": 'RFC 6750\'s challenge: `Bearer` when no token was sent, `Bearer error="invalid_token"` when '
    "the one sent was refused (401); on a 403 only for a personal access token without the scope the operation "
    'needs: `Bearer error="insufficient_scope", scope="todos:write"`.',
    "schema": {"type": "string"},
}
REPLAYED_HEADER = {
    "description": "`true` when this is the stored answer to an earlier request with the same "
    "`Idempotency-Key`, not a new creation.",
    "schema": {"type": "string", "enum": ["true"]},
}


ETAG_HEADER = {
    "description": "The representation's strong entity tag (a digest of it): send it back as `If-None-Match` "
    "(a GET answers 304 while it is current) or `If-Match` (a PATCH or DELETE answers 412 once it is not).",
    "schema": {"type": "string"},
}
# Creates whose answer is the created item's representation, tagged as a GET of it would be.
TAGGED_CREATES = frozenset({"todos_create", "posts_create"})


def operation_id(route: APIRoute) -> str:
    """The route's hand-chosen operationId (FastAPI's `generate_unique_id_function`).

    Routes left out of the schema (the web UI's pages, the docs) keep FastAPI's own id: no client sees it.
    """
    if not route.include_in_schema:
        return generate_unique_id(route)
    try:
        return OPERATION_IDS[route.name]
    except KeyError:
        raise LookupError(f"route {route.name!r} ({route.path}) has no operationId in keel.http.openapi") from None


def build(app: FastAPI, tags: list[str], *, api_prefix: str, routes: Iterable[BaseRoute]) -> dict[str, Any]:
    """The app's OpenAPI document, once; `tags` in the order /docs shows them, `routes` the API's."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
        tags=[{"name": name} for name in tags],
    )
    # Error responses reference the problem document by name; register it once here.
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(problem.pop("$defs", {}))
    components["Problem"] = problem
    components["MfaRequiredProblem"] = MfaRequiredProblem.model_json_schema(ref_template="#/components/schemas/{model}")
    components["MfaRequiredProblem"].pop("$defs", None)
    pages = {name: f"{name[5:-1]}Page" for name in components if re.fullmatch(r"Page_[A-Za-z]+_", name)}
    _rename_components(schema, {**BODY_NAMES, **pages})  # Page_TodoRead_ -> TodoReadPage
    _describe_bearer_token(schema)
    if not app.state.settings.personal_tokens_allow_no_expiry:
        _tokens_must_expire(components)
    rate_limited = {operation_id(route) for route in routes if isinstance(route, APIRoute) and _counts(route.dependant)}
    for path, item in schema["paths"].items():
        for operation in item.values():
            _document_common_problems(path, operation, api_prefix)
            _no_null_parameters(operation)
            _document_conditions(operation)
            _document_headers(operation, rate_limited=operation.get("operationId") in rate_limited)
            _link(operation)
    if "HTTPValidationError" not in json.dumps(schema["paths"]):
        # Only FastAPI's default 422 used them, and every one was replaced by the problem document.
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
    app.openapi_schema = schema
    return schema


def _rename_components(schema: dict[str, Any], names: dict[str, str]) -> None:
    components = schema["components"]["schemas"]
    renamed = {old: new for old, new in names.items() if old in components}
    for old, new in renamed.items():
        components[new] = components.pop(old)
        components[new]["title"] = new
    if not renamed:
        return
    pattern = re.compile(r"#/components/schemas/(" + "|".join(map(re.escape, renamed)) + r")\b")

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                node["$ref"] = pattern.sub(lambda match: f"#/components/schemas/{renamed[match.group(1)]}", ref)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)


def _describe_bearer_token(schema: dict[str, Any]) -> None:
    """Name the access token also as what it is on the wire, a bearer token in `Authorization`.

    FastAPI declares only the OAuth2 password flow (which /docs' Authorize button needs); clients and
    tools that do not speak OAuth2 flows (schemathesis among them) understand only the plain scheme.
    Either requirement is met by the same header, so both are listed as alternatives.
    """
    schemes = schema["components"].setdefault("securitySchemes", {})
    schemes[BEARER_SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "description": (
            "The `access_token` (a JWT) from /api/v1/auth/login or /api/v1/auth/refresh, or a personal "
            "access token (`keel_pat_...`, from POST /api/v1/tokens), told apart by its prefix. A personal "
            "access token acts only within its scopes (else 403 `insufficient_scope`) and never on /auth, "
            "/tokens, /admin or account changes (403 `personal_token_not_allowed`)."
        ),
    }
    for item in schema["paths"].values():
        for operation in item.values():
            security = operation.get("security")
            if not security:
                continue
            anonymous_allowed = {} in security
            named = [requirement for requirement in security if requirement]
            # `{}` last: an empty requirement means the route also serves anonymous callers.
            operation["security"] = [*named, {BEARER_SCHEME: []}, *([{}] if anonymous_allowed else [])]


def _tokens_must_expire(components: dict[str, Any]) -> None:
    """Where this server makes no token that never expires, its schema does not offer `null` for one."""
    field = components["AccessTokenCreate"]["properties"]["expires_in_days"]
    variants = [variant for variant in field.pop("anyOf", ()) if variant.get("type") != "null"]
    field.update(variants[0])


def _document_common_problems(path: str, operation: dict[str, Any], api_prefix: str) -> None:
    """Document the problems an operation can answer whatever its route declares.

    A body can be too large (413), of another media type (415), malformed (400) or invalid (422), so
    can a parameter (422); a token
    can be refused (401, also where a token is optional); any API operation needs the database (503).
    """
    statuses: list[int] = []
    if "requestBody" in operation:
        statuses += [400, 413, 415, 422]
    if operation.get("parameters"):
        statuses.append(422)
    if operation.get("security"):
        # 403 too: a personal access token may lack the scope, or be refused here whatever its scopes.
        statuses += [401, 403]
    if path.startswith(api_prefix):
        statuses.append(503)
    responses = operation.setdefault("responses", {})
    for status, response in problem_responses(*statuses).items():
        if _fastapi_validation_error(responses.get(str(status))):
            del responses[str(status)]  # FastAPI's own 422 shape: Keel answers a problem instead
        responses.setdefault(str(status), response)


def _fastapi_validation_error(response: dict[str, Any] | None) -> bool:
    schema = (response or {}).get("content", {}).get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref", "").endswith("/HTTPValidationError"))


def _no_null_parameters(operation: dict[str, Any]) -> None:
    """A parameter is a string on the wire, never JSON null: an optional one is simply left out.

    FastAPI writes `X | None = None` as `anyOf: [X, null]`, which tells a client (and schemathesis)
    that it may send the text "null"; `required: false` already says what None means here.
    """
    for parameter in operation.get("parameters", []):
        schema = parameter.get("schema", {})
        variants = [variant for variant in schema.get("anyOf", ()) if variant != {"type": "null"}]
        if "anyOf" in schema and len(variants) == 1:
            del schema["anyOf"]
            parameter["schema"] = {**variants[0], **schema}


def _document_conditions(operation: dict[str, Any]) -> None:
    """An operation that takes `If-None-Match` answers 304, one that takes `If-Match` 412; both send `ETag`."""
    names = {parameter.get("name") for parameter in operation.get("parameters", [])}
    responses = operation.setdefault("responses", {})
    tagged = "If-None-Match" in names or "If-Match" in names or operation.get("operationId") in TAGGED_CREATES
    if tagged:
        for status, response in responses.items():
            if status.startswith("2") and "content" in response:
                response.setdefault("headers", {})["ETag"] = ETAG_HEADER
    if "If-None-Match" in names:
        responses["304"] = {
            "description": "Not modified: the `If-None-Match` names the current `ETag`. No body.",
            "headers": {"ETag": ETAG_HEADER},
        }
    if "If-Match" in names:
        for status, response in problem_responses(412).items():
            responses.setdefault(str(status), response)


def _counts(dependant: Dependant) -> bool:
    """Whether a route's dependencies, at any depth, count its request against a rate limit."""
    return any(isinstance(sub.call, CountsTowardsRateLimits) or _counts(sub) for sub in dependant.dependencies)


def _document_headers(operation: dict[str, Any], *, rate_limited: bool) -> None:
    """Declare the headers Keel sets: on every answer `X-Request-ID`, on 429 and 503 `Retry-After`,
    on every answer of a rate-limited operation the RateLimit fields, and on a create that takes an
    `Idempotency-Key` `Idempotent-Replayed`."""
    idempotent = any(parameter.get("name") == "Idempotency-Key" for parameter in operation.get("parameters", []))
    for status, response in operation.get("responses", {}).items():
        headers = response.setdefault("headers", {})
        headers.setdefault("X-Request-ID", REQUEST_ID_HEADER)
        if status in ("429", "503"):
            headers.setdefault("Retry-After", RETRY_AFTER_HEADER)
        if status in ("401", "403") and operation.get("security"):
            headers.setdefault("WWW-Authenticate", WWW_AUTHENTICATE_HEADER)
        if rate_limited:
            headers.setdefault(POLICY_FIELD, RATE_LIMIT_POLICY_HEADER)
            headers.setdefault(LIMIT_FIELD, RATE_LIMIT_HEADER)
        if idempotent and status.startswith("2"):
            headers.setdefault("Idempotent-Replayed", REPLAYED_HEADER)


def _link(operation: dict[str, Any]) -> None:
    if operation.get("operationId") not in LINKS:
        return
    parameter, targets = LINKS[operation["operationId"]]
    created = next(response for status, response in operation["responses"].items() if status.startswith("2"))
    created["links"] = {
        target: {
            "operationId": target,
            "parameters": {parameter: "$response.body#/id"},
            "description": f"`{target}` on what this created: its `id` is the `{parameter}`.",
        }
        for target in targets
    }
