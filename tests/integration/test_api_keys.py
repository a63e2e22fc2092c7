"""API keys on the moto table: the key the store writes is the one the authorizer's lookup (no
models, no store) reads."""
from __future__ import annotations

import hashlib
import secrets

from a3s_core.store.api_keys import DynamoApiKeys


def test_given_a_key_put_by_the_store_when_the_authorizer_looks_it_up_then_it_names_the_tenant(stack):
    rt = stack.runtime
    key_hash = hashlib.sha256(secrets.token_hex(8).encode()).hexdigest()
    rt.store.put_api_key(key_hash, "acme")

    lookup = DynamoApiKeys(stack.boto.client("dynamodb"), rt.settings.table)

    assert lookup.tenant_for_key(key_hash) == "acme"
    assert rt.tenant_for_key(key_hash) == "acme"
    assert rt.store.tenant_for_key(key_hash) == "acme"
    assert lookup.tenant_for_key("0" * 64) is None
