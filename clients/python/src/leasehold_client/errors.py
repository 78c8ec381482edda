"""Typed errors.

Every refusal of the admin API is a :class:`LeaseholdError` carrying the HTTP status and the
stable refusal ``code`` of the body ``{"error": {"code", "message"}}``. The exception raised is the
subclass for its status (``NotFoundError`` for 404, ...), so callers can catch broadly or narrowly::

    try:
        lh.sessions.get(session_id)
    except NotFoundError:
        ...
    except LeaseholdError as error:
        if error.code == "tenant_at_limit":
            ...

The token endpoint answers in RFC 6749's shape instead; its refusals are :class:`OAuthError`.
Network failures are httpx's own exceptions (``httpx.TransportError``), not wrapped.
"""

from __future__ import annotations

from typing import Any

import httpx

__all__ = [
    "BadRequestError",
    "ConflictError",
    "ForbiddenError",
    "LeaseholdError",
    "NotFoundError",
    "OAuthError",
    "ServiceUnavailableError",
    "TooManyRequestsError",
    "UnauthorizedError",
    "error_from_response",
    "oauth_error_from_response",
]


class LeaseholdError(Exception):
    """The admin API refused a request.

    ``status`` is the HTTP status, ``code`` the refusal code (``not_found``, ``forbidden``,
    ``scope_conflict``, ``session_revoked``, ``tenant_at_limit``, ``root_not_allowed``, ...; see
    docs/operations.md "Refusal codes") and ``message`` the runner's sentence. A body that is not
    Leasehold's error shape (a proxy's page, an unknown route) gets the code ``http_<status>``.
    """

    def __init__(self, status: int, code: str, message: str, *, body: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.body = body


class BadRequestError(LeaseholdError):
    """400: ``invalid_request``, ``scope_conflict``, ``invalid_identifier``, ``workspace_not_found``, ..."""


class UnauthorizedError(LeaseholdError):
    """401 ``unauthorized``: no key, or one the runner does not know."""


class ForbiddenError(LeaseholdError):
    """403: ``forbidden`` (another tenant, or an operator-only operation), ``root_not_allowed``."""


class NotFoundError(LeaseholdError):
    """404 ``not_found``: absent, or another tenant's (indistinguishable on purpose)."""


class ConflictError(LeaseholdError):
    """409: ``session_revoked``, ``lease_expired``, ``approval_decided``, ``workspace_exists``."""


class TooManyRequestsError(LeaseholdError):
    """429 ``tenant_at_limit``: the tenant holds its cap of live sessions."""


class ServiceUnavailableError(LeaseholdError):
    """503: ``store_unavailable``, ``audit_unavailable``, ``no_workspace_base``, ..."""


_BY_STATUS: dict[int, type[LeaseholdError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    429: TooManyRequestsError,
    503: ServiceUnavailableError,
}


def error_from_response(response: httpx.Response) -> LeaseholdError:
    """The typed error for a refused admin API response."""
    body: Any = None
    code = f"http_{response.status_code}"
    message = response.reason_phrase or "refused"
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        if text:
            message = text[:500]
    else:
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict) and isinstance(error.get("code"), str):
            code = error["code"]
            message = str(error.get("message", ""))
    cls = _BY_STATUS.get(response.status_code, LeaseholdError)
    return cls(response.status_code, code, message, body=body)


class OAuthError(Exception):
    """The token endpoint refused an exchange (RFC 6749 section 5.2).

    ``error`` is ``invalid_request``, ``invalid_grant``, ``unsupported_grant_type``,
    ``invalid_target``, ``invalid_scope``, ``unauthorized_client`` or ``invalid_client``;
    ``description`` the server's ``error_description``; ``status`` the HTTP status (400, 401).
    """

    def __init__(self, error: str, description: str | None, status: int, *, body: Any = None) -> None:
        super().__init__(f"{status} {error}" + (f": {description}" if description else ""))
        self.error = error
        self.description = description
        self.status = status
        self.body = body


def oauth_error_from_response(response: httpx.Response) -> OAuthError:
    body: Any = None
    error = f"http_{response.status_code}"
    description: str | None = response.reason_phrase or None
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        if text:
            description = text[:500]
    else:
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            error = body["error"]
            description = body.get("error_description")
        elif isinstance(body, dict) and isinstance(body.get("error"), dict):
            # An admin-style body (e.g. a route the runner does not serve yet).
            error = str(body["error"].get("code", error))
            description = body["error"].get("message")
    return OAuthError(error, description, response.status_code, body=body)
