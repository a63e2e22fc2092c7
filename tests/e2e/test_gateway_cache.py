"""The embedded gateway caches the authorizer's answer per Authorization header for the template's
TTL (ReauthorizeEvery), as API Gateway does: repeated requests with one key invoke the authorizer
once, so local call counts match a deployment's."""
from __future__ import annotations

import secrets


def test_given_repeated_requests_with_one_key_then_the_authorizer_runs_once_per_key(stack, api):
    authorizer = stack.functions[stack.model.authorizer_function_id]
    key = f"key-{secrets.token_hex(6)}"
    stack.add_api_key(key, f"tenant-{secrets.token_hex(4)}")
    before = authorizer.invocations

    statuses = [api.call("GET", "/runs", key=key)[0] for _ in range(5)]
    other = api.call("GET", "/runs")[0]

    assert statuses == [200] * 5 and other == 200
    assert authorizer.invocations - before <= 2  # this key once, the default key at most once


def test_given_an_unknown_key_then_refused_and_the_refusal_is_cached_until_the_key_is_minted(stack, api):
    authorizer = stack.functions[stack.model.authorizer_function_id]
    key = f"key-{secrets.token_hex(6)}"
    before = authorizer.invocations

    refused = [api.call("GET", "/runs", key=key)[0] for _ in range(3)]
    assert refused == [403] * 3 and authorizer.invocations - before == 1
    stack.add_api_key(key, f"tenant-{secrets.token_hex(4)}")

    assert api.call("GET", "/runs", key=key)[0] == 200
