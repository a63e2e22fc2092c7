"""How the SDK reaches the service: HTTPS (a deployed kit or `make dev`), or in-process (Agent.local)."""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Protocol

from .errors import ServiceError, error_for


class Transport(Protocol):
    def request(self, method: str, path: str, body: Any = None, query: dict | None = None) -> Any:
        """Send one request; return the decoded JSON body or raise an A3SClientError."""


def decode(status: int, raw: bytes | str) -> Any:
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        data = {"error": {"code": "bad_response", "message": str(raw)[:500]}}
    if status >= 400:
        raise error_for(status, data)
    return data


class HttpTransport:
    def __init__(self, endpoint: str, api_key: str | None = None, timeout_s: float = 60.0) -> None:
        if not endpoint.startswith(("http://", "https://")):
            raise ValueError(f"endpoint must be an http(s) URL, got {endpoint!r}")
        self.endpoint, self.api_key, self.timeout_s = endpoint.rstrip("/"), api_key, timeout_s

    def request(self, method: str, path: str, body: Any = None, query: dict | None = None) -> Any:
        url = self.endpoint + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.api_key:
            req.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return decode(resp.status, resp.read())
        except urllib.error.HTTPError as err:
            return decode(err.code, err.read())
        except urllib.error.URLError as err:
            raise ServiceError(0, "unreachable", f"cannot reach {self.endpoint}: {err.reason}") from err
