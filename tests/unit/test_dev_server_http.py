"""The `make dev` server's own HTTP handling, on a stand-in stack: whatever a client sends, it gets an
answer in the kit's error shape; the connection is never just dropped."""
from __future__ import annotations

import http.client
import json
import socket
import threading

import pytest

from a3s_local.server import make_server


class StandInStack:
    """Answers every request with what it was given; `fail` makes invoke_http_full raise."""

    def __init__(self) -> None:
        self.fail = False
        self.seen: list[tuple] = []

    def invoke_http_full(self, method, path, body=None, query=None, headers=None):
        if self.fail:
            raise RuntimeError("the stack broke")
        self.seen.append((method, path, body, query))
        return 200, {"Content-Type": "application/json", "X-Seen": "yes"}, json.dumps({"ok": True, "body": body})


@pytest.fixture
def served():
    stack = StandInStack()
    server = make_server(stack, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stack, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def raw_request(port: int, data: bytes) -> tuple[int, dict]:
    """Send bytes as they are; the status and the JSON body of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply, "the connection was dropped without an answer"
    head, _, body = reply.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    return status, json.loads(body)


def assert_kit_error(status: int, body: dict, expected: int) -> dict:
    assert status == expected, (status, body)
    assert isinstance(body.get("error"), dict) and body["error"]["code"] and body["error"]["message"], body
    return body["error"]


def test_given_a_request_then_it_reaches_the_stack(served):
    stack, port = served
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", "/x?a=1", body=b'{"k": 1}', headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200 and json.loads(resp.read()) == {"ok": True, "body": '{"k": 1}'}
    assert stack.seen == [("POST", "/x", '{"k": 1}', {"a": "1"})]
    assert resp.getheader("X-Seen") == "yes"  # the function's own headers go on to the client


def test_given_the_stack_raises_then_500_in_the_kit_shape_and_the_connection_answers(served):
    stack, port = served
    stack.fail = True
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/sessions/x")
    resp = conn.getresponse()
    err = assert_kit_error(resp.status, json.loads(resp.read()), 500)
    assert err["code"] == "internal_error" and "the stack broke" not in err["message"]
    stack.fail = False
    conn.request("GET", "/sessions/x")  # the same connection still serves
    assert conn.getresponse().status == 200


@pytest.mark.parametrize("length", [b"abc", b"-5", b"1.5", b"1, 2"])
def test_given_a_bad_content_length_then_400(served, length):
    stack, port = served
    status, body = raw_request(port, b"POST /sessions HTTP/1.1\r\nHost: x\r\nContent-Length: " + length + b"\r\n\r\n{}")
    err = assert_kit_error(status, body, 400)
    assert err["code"] == "bad_request" and "Content-Length" in err["message"]
    assert stack.seen == []


def test_given_a_content_length_over_api_gateways_limit_then_413_without_reading_it(served):
    stack, port = served
    status, body = raw_request(port, b"POST /sessions HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999\r\n\r\n{}")
    assert_kit_error(status, body, 413)
    assert stack.seen == []


def test_given_a_chunked_body_then_411(served):
    stack, port = served
    status, body = raw_request(port, b"POST /sessions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                     b"2\r\n{}\r\n0\r\n\r\n")
    assert_kit_error(status, body, 411)
    assert stack.seen == []


def test_given_a_malformed_request_line_then_400_in_the_kit_shape(served):
    _, port = served
    status, body = raw_request(port, b"GET /sessions extra HTTP/1.1\r\nHost: x\r\n\r\n")
    assert_kit_error(status, body, 400)


@pytest.mark.parametrize("method", ["TRACE", "OPTIONS", "FOO"])
def test_given_a_method_the_api_lacks_then_405_not_501(served, method):
    stack, port = served
    status, body = raw_request(port, method.encode() + b" /sessions HTTP/1.1\r\nHost: x\r\n\r\n")
    err = assert_kit_error(status, body, 405)
    assert err["code"] == "method_not_allowed"
    assert stack.seen == []
