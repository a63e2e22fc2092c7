"""Commands that are not HTTP calls: `a3s keys create` (DynamoDB, for a deployment) and `a3s dev`."""
from __future__ import annotations

import hashlib
import importlib
import os
import re
import secrets
import sys
from typing import Any

from .output import REFUSED, UNAVAILABLE, USAGE, Fail, emit_json, out

# What `a3s dev` runs on: the [local] extra's top-level modules.
LOCAL_MODULES = ("a3s_local", "a3s_core", "boto3", "moto", "samtranslator", "yaml", "aws_lambda_powertools", "pydantic",
                 "jsonschema")
LOCAL_EXTRA = "pip install 'a3s-serverless[local]'"  # the a3s-serverless-local distribution
TENANT = re.compile(r"[A-Za-z0-9_-]{1,64}")


def create_key(args: Any) -> None:
    """Mint a key and store only its SHA-256, mapped to the tenant, as the authorizer reads it."""
    if not TENANT.fullmatch(args.tenant):
        raise Fail(USAGE, f"tenant must be 1-64 letters, digits, '-' or '_', got {args.tenant!r}")
    table = args.table or os.environ.get("A3S_TABLE")
    if not table:
        raise Fail(USAGE, "no table: pass --table NAME (the stack's TableName output) or set A3S_TABLE")
    try:  # only this command talks to AWS directly
        import boto3
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            EndpointConnectionError,
            NoCredentialsError,
            NoRegionError,
        )
    except ModuleNotFoundError:
        raise Fail(USAGE, f"a3s keys create needs boto3: pip install boto3 (or {LOCAL_EXTRA})") from None
    key = "a3s_" + secrets.token_urlsafe(32)
    item = {"pk": {"S": f"APIKEY#{hashlib.sha256(key.encode()).hexdigest()}"}, "sk": {"S": "APIKEY"},
            "tenant_id": {"S": args.tenant}}
    try:
        boto3.client("dynamodb", region_name=args.region).put_item(
            TableName=table, Item=item, ConditionExpression="attribute_not_exists(pk)")
    except (NoCredentialsError, NoRegionError) as err:
        raise Fail(USAGE, f"AWS is not configured: {err} (set AWS credentials and --region or AWS_REGION)") from None
    except ClientError as err:
        error = err.response.get("Error", {})
        raise Fail(REFUSED, f"DynamoDB refused the key ({error.get('Code')}): {error.get('Message')}") from None
    except (EndpointConnectionError, BotoCoreError) as err:
        raise Fail(UNAVAILABLE, f"cannot reach DynamoDB: {err}") from None
    if args.json:
        emit_json({"api_key": key, "tenant": args.tenant, "table": table})
    else:
        out(key)
    print(f"a3s: key for tenant {args.tenant} stored in {table} (its SHA-256 only): it is shown this once",
          file=sys.stderr)


def dev(args: Any) -> int:
    """`make dev`: the embedded stack as an HTTP API on 127.0.0.1 until Ctrl-C."""
    for name in LOCAL_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as err:
            raise Fail(USAGE, f"a3s dev needs the [local] extra (module {err.name or name!r} is missing): "
                              f"{LOCAL_EXTRA}") from None
    from a3s_local import server
    from a3s_local.embedded import kit_root

    try:
        kit_root()
    except RuntimeError as err:
        raise Fail(USAGE, str(err)) from None
    argv = ["--port", str(args.port)] + (["--workspace-root", args.workspace_root] if args.workspace_root else [])
    try:
        return server.main(argv)
    except OSError as err:  # the port is taken, or not ours to bind
        raise Fail(USAGE, f"cannot serve on 127.0.0.1:{args.port}: {err.strerror or err}") from None
