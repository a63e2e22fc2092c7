"""Errors the SDK raises: ValueError for bad arguments (before any request), typed ones for refusals."""
from __future__ import annotations


class A3SClientError(Exception):
    """The service refused a request; carries its status, code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{message} (HTTP {status}, {code})")
        self.status, self.code, self.message = status, code, message


class RequestError(A3SClientError, ValueError):
    """4xx: the request was wrong (bad input, validation)."""


class AuthError(A3SClientError):
    """401/403: missing or unknown API key."""


class NotFoundError(A3SClientError):
    """404: no such session, run, task or route for this tenant."""


class ServiceError(A3SClientError):
    """5xx: the service failed; the request may be retried."""


class RunFailed(Exception):
    """A run ended failed or cancelled; `.result` holds what it produced."""

    def __init__(self, result: object, message: str) -> None:
        super().__init__(message)
        self.result = result


def error_for(status: int, body: object) -> A3SClientError:
    err = body.get("error", {}) if isinstance(body, dict) else {}
    code = err.get("code", "error") if isinstance(err, dict) else "error"
    message = err.get("message", str(body)) if isinstance(err, dict) else str(body)
    if isinstance(body, dict) and "error" not in body and isinstance(body.get("message"), str):
        # API Gateway's own refusal ({"message": "Forbidden"}): no kit error code, so name the status's
        code, message = {401: "unauthorized", 403: "forbidden"}.get(status, code), body["message"]
    if status in (401, 403):
        return AuthError(status, code, message)
    if status == 404:
        return NotFoundError(status, code, message)
    if 400 <= status < 500:
        return RequestError(status, code, message)
    return ServiceError(status, code, message)
