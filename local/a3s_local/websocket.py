"""API Gateway's WebSocket side for the embedded stack: $connect through the key authorizer,
frames routed by `action` to the template's WebSocket function, and the management API's
post_to_connection (moto's, so the call is made and checked as on AWS) delivered to the live
local connection. `make dev` puts a real WebSocket server in front (server.py); Agent.local()
connects in-process (LocalSocket)."""
from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from a3s_core.engine.push import Gone

if TYPE_CHECKING:
    from .embedded import EmbeddedStack

Sink = Callable[[str], None]


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class LocalConnections:
    """The stack's live WebSocket connections, and the engine's poster (post(connection_id, data))."""

    def __init__(self, stack: EmbeddedStack, endpoint: str) -> None:
        self.stack = stack
        self._client = stack.boto.client("apigatewaymanagementapi", endpoint_url=endpoint)
        self._live: dict[str, tuple[Sink, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def live(self) -> int:
        return len(self._live)

    def post(self, connection_id: str, data: bytes) -> None:
        with self._lock:
            found = self._live.get(connection_id)
        if found is None:
            raise Gone(connection_id)
        self._client.post_to_connection(ConnectionId=connection_id, Data=data)
        found[0](data.decode())

    # -- what API Gateway does ---------------------------------------------------------------
    def _route(self, key: str) -> Any:
        model = self.stack.model
        assert model is not None
        return next((r for r in model.ws_routes if r.key == key), None)

    def _invoke(self, route_key: str, connection_id: str, authorizer: dict[str, Any], body: str | None = None) -> int:
        route = self._route(route_key) or self._route("$default")
        if route is None:
            return 200
        event_type = {"$connect": "CONNECT", "$disconnect": "DISCONNECT"}.get(route_key, "MESSAGE")
        ctx = {"routeKey": route_key, "eventType": event_type, "connectionId": connection_id, "stage": "events",
               "apiId": "local", "domainName": "127.0.0.1", "requestId": str(uuid.uuid4()),
               "requestTimeEpoch": int(time.time() * 1000), "authorizer": authorizer}
        out = self.stack.functions[route.function_id].invoke(
            {"requestContext": ctx, "body": body, "isBase64Encoded": False}) or {}
        return int(out.get("statusCode", 200))

    def connect(self, headers: dict[str, str], query: dict[str, str], sink: Sink) -> str:
        """$connect: authorize, run the route, and make the connection live; Refused if not."""
        route = self._route("$connect")
        connection_id = uuid.uuid4().hex[:16]
        authorizer: dict[str, Any] = {}
        if route is not None and route.authorizer_function_id:
            answer = self.stack.functions[route.authorizer_function_id].invoke({
                "type": "REQUEST", "headers": headers, "queryStringParameters": query,
                "methodArn": "arn:aws:execute-api:us-east-1:123456789012:local/events/$connect",
                "requestContext": {"routeKey": "$connect", "eventType": "CONNECT", "connectionId": connection_id}})
            statement = answer["policyDocument"]["Statement"][0]
            if statement["Effect"] != "Allow":
                raise Refused(403, "Forbidden")
            authorizer = {**answer.get("context", {}), "principalId": answer.get("principalId")}
        with self._lock:
            self._live[connection_id] = (sink, authorizer)
        status = self._invoke("$connect", connection_id, authorizer)
        if status != 200:
            with self._lock:
                self._live.pop(connection_id, None)
            raise Refused(status, "refused by $connect")
        return connection_id

    def message(self, connection_id: str, body: str) -> None:
        """A frame from the client, routed by its `action` (RouteSelectionExpression)."""
        with self._lock:
            found = self._live.get(connection_id)
        if found is None:
            return
        try:
            action = json.loads(body).get("action")
        except (ValueError, AttributeError):
            action = None
        key = action if isinstance(action, str) and self._route(action) is not None else "$default"
        self._invoke(key, connection_id, found[1], body)

    def disconnect(self, connection_id: str) -> None:
        with self._lock:
            found = self._live.pop(connection_id, None)
        if found is not None:
            self._invoke("$disconnect", connection_id, found[1])
            self._client.delete_connection(ConnectionId=connection_id)


class LocalSocket:
    """An in-process WebSocket client of the embedded stack (Agent.local()): send, recv, close."""

    def __init__(self, connections: LocalConnections, api_key: str) -> None:
        self._frames: queue.Queue[str] = queue.Queue()
        self._connections = connections
        self.connection_id = connections.connect({"authorization": f"Bearer {api_key}"}, {}, self._frames.put)
        self.closed = False

    def send(self, text: str) -> None:
        self._connections.message(self.connection_id, text)

    def recv(self, timeout: float) -> str:
        """The next frame; TimeoutError if none comes within `timeout` seconds."""
        try:
            return self._frames.get(timeout=max(0.0, timeout))
        except queue.Empty:
            raise TimeoutError(f"no frame within {timeout} s") from None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._connections.disconnect(self.connection_id)
