"""The tool sandbox: one tool call on a workspace handed over as presigned URLs.

Its role may write logs and nothing else, and Lambda's per-tenant isolation gives each tenant
execution environments of its own (callers invoke it with TenantId). See a3s_core.sandbox.
"""
from __future__ import annotations

from typing import Any

from a3s_core.sandbox import serve


def handler(event: dict, context: Any) -> dict:
    return serve(event)
