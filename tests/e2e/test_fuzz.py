"""Schemathesis against `make dev`, from the API's own /openapi.json: whatever it sends, every
request gets an answer, and none is a 5xx. A small budget here; `make fuzz` runs a bigger one."""
from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from urllib.parse import urlsplit

import pytest

from a3s_local.fuzz import fuzz

EXAMPLES = int(os.environ.get("A3S_FUZZ_TEST_EXAMPLES", "10"))
SEED = int(os.environ.get("A3S_FUZZ_TEST_SEED", "20260101"))


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory):
    proc = subprocess.Popen([sys.executable, "-m", "a3s_local.server", "--port", "0",
                             "--workspace-root", str(tmp_path_factory.mktemp("fuzz-workspaces"))],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        yield json.loads(proc.stdout.readline())  # the server's first line names its endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def send(server: dict, method: str, path: str, body: bytes, content_type: str) -> tuple[int, dict]:
    url = urlsplit(server["endpoint"])
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": content_type,
                                                       "Authorization": f"Bearer {server['api_key']}"})
        resp = conn.getresponse()  # before the fixes, some of these found the connection closed
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


@pytest.mark.parametrize("body,content_type,expected", [
    (b'{"workspace": "/tmp"}', "multipart/form-data", 415),
    (b'{"workspace": "/tmp"}', "text/plain", 415),
    (b"[" * 50_000 + b"]" * 50_000, "application/json", 400),
    (b'{"workspace": ', "application/json", 400),
], ids=["multipart-without-boundary", "text", "nested-50000-deep", "truncated"])
def test_given_a_request_that_once_crashed_the_handler_then_the_dev_server_answers_4xx(dev_server, body,
                                                                                        content_type, expected):
    status, out = send(dev_server, "POST", "/sessions", body, content_type)
    assert status == expected, out
    assert set(out) == {"error"} and out["error"]["code"] and out["error"]["message"]


def test_given_schemathesis_then_every_request_is_answered_and_none_with_a_5xx(dev_server, tmp_path):
    result = fuzz(dev_server["endpoint"], dev_server["api_key"], max_examples=EXAMPLES, max_time=240, seed=SEED,
                  workdir=tmp_path)
    print(result.summary())
    problems = "\n".join(result.server_errors + result.network_errors)
    assert result.ok, f"{result.summary()}\n{problems}\n{result.errors}"
    assert result.cases > 200  # the run did reach the API, not just the schema
