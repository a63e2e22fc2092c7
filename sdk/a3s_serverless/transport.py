"""How the SDK reaches the service: HTTPS (a deployed kit or `make dev`), or in-process (Agent.local)."""
from __future__ import annotations

import json
import os
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
    def __init__(self, endpoint: str, api_key: str | None = None, timeout_s: float = 60.0,
                 ws_url: str | None = None) -> None:
        """ws_url: the WebSocket API (default: $A3S_WS_URL, else what GET /health says; "" polls)."""
        if not endpoint.startswith(("http://", "https://")):
            raise ValueError(f"endpoint must be an http(s) URL, got {endpoint!r}")
        if ws_url and not ws_url.startswith(("ws://", "wss://")):
            raise ValueError(f"ws_url must be a ws(s) URL, got {ws_url!r}")
        self.endpoint, self.api_key, self.timeout_s = endpoint.rstrip("/"), api_key, timeout_s
        self._ws_url = ws_url

    def websocket_url(self) -> str:
        """Where pushed events come from ("" if nowhere): asked of the service once."""
        if self._ws_url is None:
            url = os.environ.get("A3S_WS_URL", "")
            if not url:
                try:
                    url = self.request("GET", "/health").get("websocket_url") or ""
                except Exception:  # an older service, or unreachable: poll
                    url = ""
            self._ws_url = url
        return self._ws_url

    def open_socket(self) -> Any:
        """A connection to the WebSocket API (push.WebSocket); ConnectionError if there is none."""
        url = self.websocket_url()
        if not url:
            raise ConnectionError("the service has no WebSocket API")
        from .push import WebSocket

        return WebSocket(url, self.api_key)

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
