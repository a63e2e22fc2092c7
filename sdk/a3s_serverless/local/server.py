"""`make dev`: the embedded stack as a long-lived HTTP API on 127.0.0.1, for other processes
(workers, clients) to use as they would a deployed kit.

    python -m a3s_serverless.local.server --port 8787
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .embedded import LOCAL_API_KEY, EmbeddedStack


def make_server(stack: EmbeddedStack, port: int = 8787) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode("utf-8", "replace") if length else None
            query = dict(urllib.parse.parse_qsl(url.query))
            status, raw = stack.invoke_http(self.command, url.path, body, query, dict(self.headers.items()))
            data = raw.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

        def log_message(self, fmt: str, *args: object) -> None:
            logging.getLogger("a3s_serverless.dev").debug(fmt, *args)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)  # loopback only
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run the a3s-serverless embedded stack as a local HTTP API.")
    p.add_argument("--port", type=int, default=8787, help="0 picks a free port")
    p.add_argument("--workspace-root", default=None, help="where workspaces that do not exist are made")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stack = EmbeddedStack(workspace_root=args.workspace_root).start()
    server = make_server(stack, args.port)
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    # One machine-readable line first, so scripts and tests can find the endpoint.
    print(json.dumps({"endpoint": endpoint, "api_key": LOCAL_API_KEY}), flush=True)
    print(f"a3s-serverless dev stack on {endpoint} (API key {LOCAL_API_KEY}); Ctrl-C stops it", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        stack.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
