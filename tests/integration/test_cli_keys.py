"""`a3s keys create` against the deployment's table (moto): the key it prints is one the
authorizer accepts for that tenant, and only its hash is stored."""
from __future__ import annotations

import hashlib
import json
import sys
import zlib

import pytest

from a3s_serverless.cli import main


@pytest.fixture
def keys(stack, capsys, monkeypatch):
    monkeypatch.delenv("A3S_TABLE", raising=False)

    def run(*argv: str):
        capsys.readouterr()
        code = main(["keys", "create", *argv])
        got = capsys.readouterr()
        return code, got.out, got.err

    return run


def test_given_a_tenant_when_a_key_is_created_then_it_opens_that_tenants_api_and_only_its_hash_is_stored(
        stack, keys):
    table = stack.env["A3S_TABLE"]
    code, out, err = keys("--tenant", "cli-acme", "--table", table, "--region", stack.model.region)

    assert code == 0 and "shown this once" in err
    key = out.strip()
    assert key.startswith("a3s_") and len(key) > 40
    session = stack.transport(key).request("POST", "/sessions", {"workspace": "ws"})  # the authorizer accepts it
    status, _ = stack.invoke_http("GET", f"/sessions/{session['session_id']}", None, None,
                                  {"authorization": "Bearer a3s-local-key"})
    assert status == 404  # the session is the new tenant's, not the default one's
    db = stack.boto.client("dynamodb")
    item = db.get_item(TableName=table, Key={"pk": {"S": f"APIKEY#{hashlib.sha256(key.encode()).hexdigest()}"},
                                             "sk": {"S": "APIKEY"}})["Item"]
    assert item["tenant_id"] == {"S": "cli-acme"}
    # the key itself is nowhere (compressed documents, binary, are read as the text they hold)
    items = db.scan(TableName=table)["Items"]
    text = json.dumps(items, default=str) + "".join(zlib.decompress(i["z"]["B"]).decode() for i in items if "z" in i)
    assert key not in text


def test_given_json_and_the_table_from_the_environment_then_the_key_is_in_the_body(stack, keys, monkeypatch):
    monkeypatch.setenv("A3S_TABLE", stack.env["A3S_TABLE"])
    code, out, _ = keys("--tenant", "cli-json", "--region", stack.model.region, "--json")
    body = json.loads(out)
    assert code == 0 and body["tenant"] == "cli-json" and body["table"] == stack.env["A3S_TABLE"]
    assert stack.transport(body["api_key"]).request("GET", "/sessions") == {"sessions": []}


@pytest.mark.parametrize("argv,code,words", [
    (["--tenant", "bad tenant!", "--table", "t"], 2, ["tenant must be"]),
    (["--tenant", "acme"], 2, ["no table", "A3S_TABLE"]),
    (["--tenant", "acme", "--table", "no-such-table", "--region", "us-east-1"], 1, ["ResourceNotFoundException"]),
])
def test_given_bad_input_or_a_missing_table_then_a_clear_error_and_exit_code(keys, argv, code, words):
    got, out, err = keys(*argv)
    assert got == code and out == "" and "Traceback" not in err
    for word in words:
        assert word in err, err


def test_given_no_boto3_then_exit_2_naming_what_to_install(keys, monkeypatch):
    monkeypatch.setitem(sys.modules, "boto3", None)
    code, out, err = keys("--tenant", "acme", "--table", "t")
    assert code == 2 and out == "" and "pip install boto3" in err
