"""`make dev`: the embedded stack as a long-lived HTTP API on 127.0.0.1, for other processes
(workers, clients) to use as they would a deployed kit, and its WebSocket API on the next port.

    python -m a3s_local.server --port 8787      # ws://127.0.0.1:8788 for pushed events
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import signal
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .embedded import LOCAL_API_KEY, EmbeddedStack

# API Gateway's own limit on a request; the API function refuses bodies over 256 KiB itself.
MAX_REQUEST_BYTES = 10 * 1024 * 1024
# The server frames each answer itself: these never come from the function.
HOP_HEADERS = {"content-length", "connection", "transfer-encoding", "keep-alive"}
log = logging.getLogger("a3s_serverless.dev")


def _error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def make_server(stack: EmbeddedStack, port: int = 8787) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 60  # a client that stops sending mid-request frees its thread
        disable_nagle_algorithm = True  # headers and body leave at once, not 40 ms apart

        def _answer(self, status: int, data: bytes, close: bool = False, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            headers = headers or {"Content-Type": "application/json"}
            for name, value in headers.items():
                if name.lower() not in HOP_HEADERS:
                    self.send_header(name, value)
            if status == 304:  # no body, and no length of one
                data = b""
            else:
                self.send_header("Content-Length", str(len(data)))
            if close:  # the body's framing is unknown: what follows on this connection cannot be trusted
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _body_length(self) -> int | None:
            """The body's length; None once a refusal has been sent."""
            if self.headers.get("Transfer-Encoding"):
                self._answer(411, _error_body("length_required", "send the body with a Content-Length, not chunked"),
                             close=True)
                return None
            raw = (self.headers.get("Content-Length") or "0").strip()
            if not raw.isdigit():
                self._answer(400, _error_body("bad_request", f"Content-Length {raw[:40]!r} is not a byte count"),
                             close=True)
                return None
            if int(raw) > MAX_REQUEST_BYTES:
                self._answer(413, _error_body("payload_too_large", f"request exceeds {MAX_REQUEST_BYTES} bytes"),
                             close=True)
                return None
            return int(raw)

        def _serve(self) -> None:
            length = self._body_length()
            if length is None:
                return
            body = self.rfile.read(length).decode("utf-8", "replace") if length else None
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            try:
                status, headers, raw = stack.invoke_http_full(self.command, url.path, body, query,
                                                              dict(self.headers.items()))
                data = raw.encode()
            except Exception:  # what a deployed API Gateway answers too: a 500, never a dropped connection
                log.exception("%s %s failed", self.command, url.path)
                status, headers = 500, None
                data = _error_body("internal_error", "internal error; see the dev server's log")
            self._answer(status, data, headers=headers)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            # http.server's own refusals (malformed request line, headers too long, a method it has
            # no do_ for) in the kit's shape; a method the API lacks is the caller's 405, not a 501
            error = "bad_request"
            if code == 501:
                code, error, message = 405, "method_not_allowed", f"{self.command[:20]} is not a method of this API"
            elif code >= 500:
                error = "internal_error"
            with contextlib.suppress(OSError):  # the client has gone
                self._answer(code, _error_body(error, message or self.responses.get(code, ("error",))[0]), close=True)

        def log_message(self, fmt: str, *args: object) -> None:
            log.debug(fmt, *args)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)  # loopback only
    server.daemon_threads = True
    return server


def make_ws_server(stack: EmbeddedStack, port: int = 8788) -> Any:
    """The stack's WebSocket API on 127.0.0.1 (websockets' threaded server): $connect through the
    key authorizer (the Authorization header, or ?key= as a browser sends it), frames routed by
    `action`, and what the engine posts delivered to the connection."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.server import ServerConnection, serve

    from a3s_core.engine.push import Gone

    from .websocket import Refused

    ids: dict[int, str] = {}

    def process_request(connection: ServerConnection, request: Any) -> Any:
        headers = {k.lower(): v for k, v in request.headers.raw_items()}
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(request.path).query))

        def sink(text: str) -> None:
            try:
                connection.send(text)
            except ConnectionClosed as err:
                raise Gone(str(err)) from err

        try:
            ids[id(connection)] = stack.connections.connect(headers, query, sink)
        except Refused as err:
            return connection.respond(err.status, f"{err}\n")
        return None

    def handler(connection: ServerConnection) -> None:
        connection_id = ids.pop(id(connection))
        try:
            for message in connection:
                stack.connections.message(connection_id, message if isinstance(message, str) else message.decode())
        except ConnectionClosed:
            pass
        finally:
            stack.connections.disconnect(connection_id)

    return serve(handler, "127.0.0.1", port, process_request=process_request, compression=None)  # loopback only


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run the a3s-serverless embedded stack as a local HTTP API.")
    p.add_argument("--port", type=int, default=8787, help="0 picks a free port")
    p.add_argument("--ws-port", type=int, default=None, help="the WebSocket API's port (default: --port + 1)")
    p.add_argument("--workspace-root", default=None, help="where workspaces that do not exist are made")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stack = EmbeddedStack(workspace_root=args.workspace_root).start()
    server = make_server(stack, args.port)
    port = server.server_address[1]
    if args.ws_port is not None:
        ws_server = make_ws_server(stack, args.ws_port)
    else:  # the next port, or any free one if that is taken (the URL is printed, and GET /health says it)
        try:
            ws_server = make_ws_server(stack, port + 1 if args.port else 0)
        except OSError:
            ws_server = make_ws_server(stack, 0)
    endpoint, ws_url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{ws_server.socket.getsockname()[1]}"
    stack.runtime.settings = dataclasses.replace(stack.runtime.settings, ws_url=ws_url)  # GET /health says so
    threading.Thread(target=ws_server.serve_forever, daemon=True, name="ws-server").start()
    # One machine-readable line first, so scripts and tests can find the endpoint.
    print(json.dumps({"endpoint": endpoint, "api_key": LOCAL_API_KEY, "websocket_url": ws_url}), flush=True)
    print(f"a3s-serverless dev stack on {endpoint}, events over WebSocket on {ws_url} (API key {LOCAL_API_KEY}); "
          "Ctrl-C stops it", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        ws_server.shutdown()
        stack.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
