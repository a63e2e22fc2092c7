"""The embedded stack's patches to moto's DynamoDB keep the service's semantics: a Query returns one
partition's (or one index key's) items in key order, forward or back, paged by Limit and
ExclusiveStartKey, filtered after the key condition; items without an index's keys are not in it."""
from __future__ import annotations

import random
import secrets

import pytest


@pytest.fixture
def table(stack):
    db = stack.boto.client("dynamodb")
    name = f"patch-{secrets.token_hex(4)}"
    db.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in ("pk", "sk", "g", "gs")],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[{"IndexName": "gsi", "Projection": {"ProjectionType": "ALL"},
                                 "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"},
                                               {"AttributeName": "gs", "KeyType": "RANGE"}]}])
    items = [{"pk": f"p{p}", "sk": f"{i:03d}", "n": str(i % 3)} for p in range(3) for i in range(12)]
    for item in items:
        if int(item["sk"]) % 2 == 0:  # every other item is in the index, under two index keys
            item.update(g=f"g{int(item['sk']) % 4}", gs=f"{item['pk']}#{item['sk']}")
    random.Random(7).shuffle(items)
    for item in items:
        db.put_item(TableName=name, Item={k: {"S": v} for k, v in item.items()})
    yield db, name
    db.delete_table(TableName=name)


def query_all(db, name: str, page: int, **kwargs) -> list[str]:
    out, args = [], {"TableName": name, "Limit": page, **kwargs}
    while True:
        got = db.query(**args)
        out += [i["sk"]["S"] if "IndexName" not in kwargs else i["gs"]["S"] for i in got["Items"]]
        if "LastEvaluatedKey" not in got:
            return out
        args["ExclusiveStartKey"] = got["LastEvaluatedKey"]


def test_given_a_query_on_the_table_then_one_partition_in_key_order_both_ways_and_paged(table):
    db, name = table
    key = {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "p1"}}}

    forward = query_all(db, name, 5, **key)
    backward = query_all(db, name, 5, ScanIndexForward=False, **key)

    assert forward == [f"{i:03d}" for i in range(12)]
    assert backward == forward[::-1]


def test_given_a_range_condition_and_a_filter_then_both_apply_within_the_partition(table):
    db, name = table

    got = query_all(db, name, 3, KeyConditionExpression="pk = :p AND sk BETWEEN :a AND :b",
                    FilterExpression="n = :n",
                    ExpressionAttributeValues={":p": {"S": "p2"}, ":a": {"S": "002"}, ":b": {"S": "010"},
                                               ":n": {"S": "0"}})

    assert got == ["003", "006", "009"]


def test_given_a_query_on_an_index_then_only_indexed_items_of_that_key_in_index_order(table):
    db, name = table

    got = query_all(db, name, 2, IndexName="gsi", KeyConditionExpression="g = :g",
                    ExpressionAttributeValues={":g": {"S": "g2"}})
    back = query_all(db, name, 4, IndexName="gsi", ScanIndexForward=False, KeyConditionExpression="g = :g",
                     ExpressionAttributeValues={":g": {"S": "g2"}})

    assert got == [f"p{p}#{i:03d}" for p in range(3) for i in (2, 6, 10)]
    assert back == got[::-1]


def test_given_the_patch_then_a_scan_still_sees_every_item(table):
    db, name = table

    assert db.scan(TableName=name)["Count"] == 36
