"""API keys in the table: APIKEY#<sha256 of the key> names its tenant. Apart from the store (and so
from the models) because the authorizer needs this one GetItem and nothing else."""
from __future__ import annotations

from typing import Any


def api_key_key(key_hash: str) -> dict[str, str]:
    return {"pk": f"APIKEY#{key_hash}", "sk": "APIKEY"}


def api_key_item(key_hash: str, tenant: str) -> dict[str, Any]:
    """The item as DynamoDB takes it (no `ttl`: a key lasts until it is deleted)."""
    return {**{k: {"S": v} for k, v in api_key_key(key_hash).items()}, "tenant_id": {"S": tenant}}


class DynamoApiKeys:
    def __init__(self, client: Any, table: str) -> None:
        self._db, self._table = client, table

    def tenant_for_key(self, key_hash: str) -> str | None:
        key = {k: {"S": v} for k, v in api_key_key(key_hash).items()}
        item = self._db.get_item(TableName=self._table, Key=key, ConsistentRead=True).get("Item")
        return item["tenant_id"]["S"] if item else None
