"""Where a tenant's workspace lives: a directory under <root>/<tenant>/ on a machine of the
stack's own (the embedded stack, `make dev`), the prefix workspaces/<tenant>/ on AWS."""
from __future__ import annotations

import posixpath
from pathlib import Path

from a3s_core.domain.errors import BadRequest
from a3s_core.runtime import Runtime
from a3s_core.workspace.base import LocalWorkspace, Workspace
from a3s_core.workspace.s3 import S3Workspace


def workspace_for(rt: Runtime, tenant: str, workspace: str) -> Workspace:
    """A local directory where the stack has a filesystem of its own (the embedded stack, `make
    dev`); on AWS, the tenant's S3 prefix, since Lambdas share no disk."""
    if rt.settings.workspace_root or not rt.settings.bucket:
        check_workspace_name(workspace)
        try:
            return LocalWorkspace(workspace_dir(rt, tenant, workspace))
        except (OSError, ValueError) as err:  # too long a name, a file in the way, no permission...
            if isinstance(err, BadRequest):
                raise
            reason = getattr(err, "strerror", None) or err
            raise BadRequest(f"workspace {workspace!r} cannot be used: {reason}") from None
    tenant_dir(Path("/"), tenant)
    return S3Workspace(rt.s3, rt.settings.bucket, f"workspaces/{tenant}/{check_workspace_name(workspace)}")


def check_workspace_name(workspace: object) -> str:
    """A workspace name as a normalised tenant-relative path ("" for the tenant's root): no '..',
    no NUL (BadRequest otherwise)."""
    if not isinstance(workspace, str):
        raise BadRequest(f"workspace must be a string, got {type(workspace).__name__}")
    if "\x00" in workspace or ".." in workspace.split("/"):
        raise BadRequest(f"workspace {workspace!r} may not contain '..' or NUL")
    name = posixpath.normpath(workspace.strip("/") or ".")
    return "" if name == "." else name


def tenant_dir(root: Path, tenant: str) -> Path:
    if tenant in ("", ".", "..") or "/" in tenant or "\x00" in tenant:
        raise BadRequest(f"tenant {tenant!r} cannot name a directory")
    return root / tenant


def workspace_dir(rt: Runtime, tenant: str, workspace: str) -> Path:
    """Each tenant's workspaces live under <root>/<tenant>/. Only the host's own tenant (the
    embedded stack's default one: a user's Agent.local() on their own repository) may name a
    directory elsewhere; for every other tenant an absolute path outside its root is refused."""
    root = Path(rt.settings.workspace_root or "/tmp/a3s-workspaces").resolve()
    tenant_root = tenant_dir(root, tenant)
    path = Path(workspace)
    if path.is_absolute():
        resolved = path.resolve()
        if resolved.is_relative_to(tenant_root):
            resolved.mkdir(parents=True, exist_ok=True)
            return resolved
        if tenant != rt.settings.host_tenant:
            raise BadRequest(f"workspace {workspace!r} is outside this tenant's workspaces: use a relative name")
        if resolved.is_dir():
            return resolved
    target = (tenant_root / check_workspace_name(workspace)).resolve()
    if not target.is_relative_to(tenant_root):  # a symlink planted under the root
        raise BadRequest(f"workspace {workspace!r} is outside this tenant's workspaces")
    target.mkdir(parents=True, exist_ok=True)
    return target


def refusal(rt: Runtime, tenant: str, workspace: str) -> str | None:
    """Why this tenant may not use that workspace, or None."""
    try:
        workspace_for(rt, tenant, workspace)
    except BadRequest as err:
        return str(err)
    return None
