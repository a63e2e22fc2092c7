"""Issue an API key for a tenant of a deployed kit (only its SHA-256 is stored).

    python scripts/create_api_key.py --table <TableName output> --tenant acme [--region eu-west-1]
"""
from __future__ import annotations

import argparse
import hashlib
import secrets

import boto3

from a3s_core.store.dynamo import DynamoStore


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table", required=True)
    p.add_argument("--tenant", required=True)
    p.add_argument("--region", default=None)
    args = p.parse_args()
    if not args.tenant.replace("-", "").replace("_", "").isalnum():
        raise SystemExit("tenant must be letters, digits, '-' or '_'")
    key = "a3s_" + secrets.token_urlsafe(32)
    store = DynamoStore(boto3.client("dynamodb", region_name=args.region), args.table)
    store.put_api_key(hashlib.sha256(key.encode()).hexdigest(), args.tenant)
    print(key)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
