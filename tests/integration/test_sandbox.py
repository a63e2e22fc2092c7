"""The Lambda sandbox path end to end on moto: the caller lists the tenant's prefix and presigns
URLs for it, the sandbox fetches them over HTTP, runs the tool and PUTs back a tarball of what it
changed, and the caller applies it. A small HTTP front (on 127.0.0.1) stands in for S3's endpoint
and serves the presigned requests from moto."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from a3s_core.tools import sandbox
from a3s_core.tools.builtin import ToolError
from a3s_core.workspace.s3 import S3Workspace


@pytest.fixture
def s3_http():
    """(client presigning for a local HTTP endpoint, the moto client behind it, bucket, requests seen)."""
    import boto3
    from botocore.config import Config
    from moto import mock_aws

    with mock_aws():
        backend = boto3.client("s3", region_name="us-east-1")
        bucket = f"a3s-sbx-{uuid.uuid4().hex[:8]}"
        backend.create_bucket(Bucket=bucket)
        seen: list[tuple[str, str]] = []

        class Front(BaseHTTPRequestHandler):
            def _key(self) -> tuple[str, str]:
                path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
                b, _, key = path.lstrip("/").partition("/")
                seen.append((self.command, key))
                return b, key

            def do_GET(self) -> None:
                b, key = self._key()
                body = backend.get_object(Bucket=b, Key=key)["Body"].read()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_PUT(self) -> None:
                b, key = self._key()
                backend.put_object(Bucket=b, Key=key, Body=self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Front)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        local = boto3.client("s3", region_name="us-east-1", endpoint_url=f"http://127.0.0.1:{server.server_address[1]}",
                             config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"))

        class Client:  # the caller's S3 client: API calls to moto, presigned URLs for the HTTP front
            def __getattr__(self, name: str) -> Any:
                return getattr(backend, name)

            def generate_presigned_url(self, *args: Any, **kwargs: Any) -> str:
                return local.generate_presigned_url(*args, **kwargs)

        yield Client(), backend, bucket, seen
        server.shutdown()


HANDLER = Path(__file__).parents[2] / "functions" / "sandbox" / "app.py"
INVOKE = """
import importlib.util, json, sys, types
spec = importlib.util.spec_from_file_location("sandbox_app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
context = types.SimpleNamespace(function_name="sandbox", memory_limit_in_mb=1024, aws_request_id="req-1",
                                invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:sandbox")
print(json.dumps(module.handler(json.loads(sys.stdin.read()), context)))
"""


class FakeLambda:
    """Invokes the sandbox function's handler in a process of its own, as Lambda would."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def invoke(self, **kwargs: Any) -> dict:
        self.calls.append(kwargs)
        done = subprocess.run([sys.executable, "-c", INVOKE, str(HANDLER)], input=kwargs["Payload"],
                              capture_output=True, timeout=60)
        if done.returncode:
            return {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": io.BytesIO(done.stderr[-2000:])}
        return {"StatusCode": 200, "Payload": io.BytesIO(done.stdout)}


def test_given_a_tenants_s3_workspace_when_bash_runs_in_the_sandbox_then_it_sees_only_that_prefix_and_changes_come_back(
        s3_http):
    presigner, s3, bucket, seen = s3_http
    for key, body in {"workspaces/acme/proj/a.txt": "alpha\n", "workspaces/acme/proj/sub/b.txt": "bee\n",
                      "workspaces/beta/proj/secret.env": "TOKEN=beta\n"}.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body.encode())
    fake = FakeLambda()
    box = sandbox.LambdaSandbox(fake, "sandbox-fn", presigner, bucket)
    ws = S3Workspace(presigner, bucket, "workspaces/acme/proj")

    result = box.run_tool("acme", "bash", {"command": "cat a.txt; find .. -type f | sort; echo new > c.txt; "
                                                      "rm sub/b.txt; echo changed > a.txt; ln -s /etc/hostname link"}, ws)

    assert fake.calls[0]["TenantId"] == "acme" and fake.calls[0]["FunctionName"] == "sandbox-fn"
    assert result["exit_code"] == 0 and result["output"].startswith("alpha\n")
    assert "secret" not in result["output"] and "beta" not in result["output"]
    assert all(key.startswith(("workspaces/acme/proj/", "sandbox/acme/")) for _, key in seen)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert keys == {"workspaces/acme/proj/a.txt", "workspaces/acme/proj/c.txt", "workspaces/beta/proj/secret.env"}
    assert s3.get_object(Bucket=bucket, Key="workspaces/acme/proj/a.txt")["Body"].read() == b"changed\n"
    assert s3.get_object(Bucket=bucket, Key="workspaces/acme/proj/c.txt")["Body"].read() == b"new\n"


def test_given_a_failing_tool_in_the_sandbox_when_it_returns_then_the_caller_gets_a_tool_error_and_nothing_changes(
        s3_http):
    presigner, s3, bucket, _ = s3_http
    s3.put_object(Bucket=bucket, Key="workspaces/acme/p/a.txt", Body=b"x")
    box = sandbox.LambdaSandbox(FakeLambda(), "sandbox-fn", presigner, bucket)
    with pytest.raises(ToolError, match="timed out after 300 ms"):
        box.run_tool("acme", "bash", {"command": "sleep 5", "timeout_ms": 300}, S3Workspace(presigner, bucket, "workspaces/acme/p"))
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["workspaces/acme/p/a.txt"]


def test_given_a_sandbox_that_crashes_when_invoked_then_the_caller_gets_a_tool_error():
    class Crashing:
        def invoke(self, **_: Any) -> dict:
            return {"StatusCode": 200, "FunctionError": "Unhandled",
                    "Payload": io.BytesIO(b'{"errorMessage": "out of memory"}')}

    class S3:
        def get_paginator(self, _):
            return type("P", (), {"paginate": lambda self, **kw: [{"Contents": []}]})()

        def generate_presigned_url(self, *_a, **_k):
            return "http://127.0.0.1:9/x"

    with pytest.raises(ToolError, match="the sandbox failed: .*out of memory"):
        sandbox.LambdaSandbox(Crashing(), "fn", S3(), "b").run_tool("acme", "bash", {"command": "true"},
                                                                   S3Workspace(S3(), "b", "workspaces/acme/p"))


def _alive(marker: str) -> list[str]:
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if marker in cmd:
                out.append(cmd)
    return out


def test_given_a_workspace_that_plants_a_fake_runner_when_bash_runs_then_the_real_runner_runs_it(s3_http):
    presigner, s3, bucket, _ = s3_http
    fake = 'import sys; sys.stdout.write(\'{"output": "HIJACKED", "exit_code": 0, "timed_out": false, "dropped": 0}\')'
    for key, body in {"a3s_core/__init__.py": "", "a3s_core/tools/isolation.py": fake, "tools/isolation.py": fake}.items():
        s3.put_object(Bucket=bucket, Key=f"workspaces/acme/p/{key}", Body=body.encode())
    out = sandbox.LambdaSandbox(FakeLambda(), "fn", presigner, bucket).run_tool(
        "acme", "bash", {"command": "echo real"}, S3Workspace(presigner, bucket, "workspaces/acme/p"))
    assert out["output"] == "real\n"


def test_given_a_command_that_kills_its_runner_when_the_sandbox_returns_then_nothing_it_started_survives(s3_http):
    presigner, _, bucket, _ = s3_http
    marker = "53.1137"
    box = sandbox.LambdaSandbox(FakeLambda(), "fn", presigner, bucket)
    with pytest.raises(ToolError):
        box.run_tool("acme", "bash", {"command": f"setsid sleep {marker} & kill -9 $PPID"},
                     S3Workspace(presigner, bucket, "workspaces/acme/k"))
    assert _alive(f"sleep {marker}") == []
