"""Where tools that run code execute: never inside a function that holds the kit's credentials.

On AWS that is the SandboxFunction: Lambda tenant isolation (an execution environment serves one
tenant only), a role that may write logs and nothing else, and the workspace handed over as
presigned S3 URLs that the caller makes for the tenant's own prefix: one GET per file, one PUT
for a tarball of what the tool changed, which the caller then applies. Code that reads the
sandbox's own credentials can reach nothing. Elsewhere (the embedded stack, `make dev`) the same
tool code runs in an isolated subprocess (tools/isolation.py), as every `bash` does.

File tools (read, write, edit, ls, glob, grep) run no code: they stay where they are, behind the
workspace's path checks.
"""
from __future__ import annotations

import hashlib
import io
import json
import posixpath
import shutil
import tarfile
import tempfile
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Protocol

from a3s_core.domain import catalogue
from a3s_core.tools.builtin import BASH_DEFAULT_TIMEOUT_MS, ToolError, run_tool
from a3s_core.workspace.base import LocalWorkspace, Workspace
from a3s_core.workspace.s3 import S3Workspace

CODE_TOOLS = catalogue.CODE_TOOLS  # tools that run what the model wrote
URL_EXPIRY_S = 1_200               # the sandbox's longest run (its 900 s timeout), and some
MAX_CHANGES_BYTES = 100 * 1024 * 1024  # a bigger tarball of changes is refused, not read into memory
HTTP_TIMEOUT_S = 60


def within(arguments: dict[str, Any], limit_ms: int) -> dict[str, Any]:
    """A command's arguments with its timeout cut to `limit_ms` (a command must not outlive
    whatever waits for it); arguments the tool will refuse anyway are left as they are."""
    asked = arguments.get("timeout_ms", BASH_DEFAULT_TIMEOUT_MS)
    if isinstance(asked, bool) or not isinstance(asked, (int, float)):
        return arguments
    return {**arguments, "timeout_ms": max(1, int(min(asked, limit_ms)))}


class Sandbox(Protocol):
    def run_tool(self, tenant: str, name: str, arguments: dict[str, Any], workspace: Workspace) -> dict[str, Any]:
        """The tool's result, or ToolError."""
        ...


class LocalSandbox:
    """The tool in this process, its commands isolated (the embedded stack, workers on a host).
    An S3 workspace is copied to a temporary directory and what changed is written back."""

    def run_tool(self, tenant: str, name: str, arguments: dict[str, Any], workspace: Workspace) -> dict[str, Any]:
        if not isinstance(workspace, S3Workspace) or name not in CODE_TOOLS:
            return run_tool(name, arguments, workspace)
        with tempfile.TemporaryDirectory(prefix="a3s-task-") as tmp:
            before = workspace.snapshot_to(Path(tmp))
            try:
                return run_tool(name, arguments, LocalWorkspace(tmp))
            finally:
                workspace.sync_from(Path(tmp), before)


class LambdaSandbox:
    """The SandboxFunction, invoked synchronously with the tenant as its TenantId."""

    def __init__(self, lambda_client: Any, function_name: str, s3: Any, bucket: str) -> None:
        self._lambda, self.function_name, self._s3, self.bucket = lambda_client, function_name, s3, bucket

    def run_tool(self, tenant: str, name: str, arguments: dict[str, Any], workspace: Workspace) -> dict[str, Any]:
        if not isinstance(workspace, S3Workspace):
            raise ToolError("the sandbox works on S3 workspaces only")
        request = self.request(tenant, name, arguments, workspace)
        staging = request.pop("staging_key")
        resp = self._lambda.invoke(FunctionName=self.function_name, TenantId=tenant,
                                   Payload=json.dumps(request).encode())
        body = resp["Payload"].read()
        if resp.get("FunctionError"):
            raise ToolError(f"the sandbox failed: {body.decode(errors='replace')[:2000]}")
        return self.apply(json.loads(body), workspace, staging)

    def request(self, tenant: str, name: str, arguments: dict[str, Any], ws: S3Workspace) -> dict[str, Any]:
        """Presigned URLs for the tenant's own prefix only: a GET per file, a PUT for the changes."""
        files: dict[str, str] = {}
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=ws.bucket, Prefix=ws.prefix):
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(ws.prefix):]
                if rel and not rel.endswith("/"):
                    files[rel] = self._s3.generate_presigned_url(
                        "get_object", Params={"Bucket": ws.bucket, "Key": obj["Key"]}, ExpiresIn=URL_EXPIRY_S)
        staging = f"sandbox/{tenant}/{uuid.uuid4().hex}.tar.gz"
        upload = self._s3.generate_presigned_url("put_object", Params={"Bucket": self.bucket, "Key": staging},
                                                 ExpiresIn=URL_EXPIRY_S)
        return {"tool": name, "arguments": arguments, "files": files, "upload_url": upload, "staging_key": staging}

    def apply(self, out: dict[str, Any], ws: S3Workspace, staging: str) -> dict[str, Any]:
        """Write back what the sandbox says it changed, from the tarball it uploaded."""
        changed, deleted = set(out.get("changed") or []), out.get("deleted") or []
        if changed:
            size = self._s3.head_object(Bucket=self.bucket, Key=staging)["ContentLength"]
            if size > MAX_CHANGES_BYTES:
                self._s3.delete_object(Bucket=self.bucket, Key=staging)
                raise ToolError(f"the command changed {size} bytes of files, more than {MAX_CHANGES_BYTES}; "
                                "nothing was written back")
            blob = self._s3.get_object(Bucket=self.bucket, Key=staging)["Body"].read()
            with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
                for member in tar.getmembers():
                    if member.isfile() and member.name in changed and _safe(member.name):
                        data = tar.extractfile(member)
                        if data is not None:
                            self._s3.put_object(Bucket=ws.bucket, Key=ws.prefix + member.name, Body=data.read())
            self._s3.delete_object(Bucket=self.bucket, Key=staging)
        for rel in deleted:
            if _safe(rel):
                self._s3.delete_object(Bucket=ws.bucket, Key=ws.prefix + rel)
        if out.get("error") is not None:
            raise ToolError(out["error"])
        return out["result"]


def _safe(rel: str) -> bool:
    """A plain workspace-relative file path: not absolute, not ".", nothing that climbs out."""
    norm = posixpath.normpath(rel)
    return (bool(rel) and not rel.startswith("/") and norm == rel and norm != "."
            and norm != ".." and not norm.startswith("../") and "\x00" not in rel)


def serve(request: dict[str, Any]) -> dict[str, Any]:
    """The SandboxFunction's work: fetch the workspace, run the tool, upload what changed, forget
    everything. {result | error, changed, deleted}."""
    tmp = Path(tempfile.mkdtemp(prefix="a3s-sandbox-"))
    try:
        root = tmp / "ws"
        root.mkdir()
        before: dict[str, str] = {}
        for rel, url in (request.get("files") or {}).items():
            if not _safe(rel):
                continue
            with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as resp:  # noqa: S310 (presigned https)
                body = resp.read()
            try:
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                (root / rel).write_bytes(body)
            except OSError:
                continue  # a key no filesystem can hold (both "x" and "x/y", too long a name): left out
            before[rel] = hashlib.sha256(body).hexdigest()
        try:
            result, error = run_tool(request["tool"], request.get("arguments") or {}, LocalWorkspace(root)), None
        except ToolError as err:
            result, error = None, str(err)
        changed, now = [], set()
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for path in sorted(root.rglob("*")):
                if path.is_symlink() or not path.is_file():
                    continue  # a link could point anywhere; only regular files go back
                rel = path.relative_to(root).as_posix()
                now.add(rel)
                if before.get(rel) != hashlib.sha256(path.read_bytes()).hexdigest():
                    tar.add(path, arcname=rel, recursive=False)
                    changed.append(rel)
        if changed:
            put = urllib.request.Request(request["upload_url"], data=buf.getvalue(), method="PUT")
            with urllib.request.urlopen(put, timeout=HTTP_TIMEOUT_S):  # noqa: S310
                pass
        return {"result": result, "error": error, "changed": changed, "deleted": sorted(set(before) - now)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
