"""The embedded stack's patches to moto's DynamoDB keep the service's semantics: a Query returns one
partition's (or one index key's) items in key order, forward or back, paged by Limit and
ExclusiveStartKey, filtered after the key condition; items without an index's keys are not in it."""
from __future__ import annotations

import json
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


# -- DynamoDB's results written as JSON -------------------------------------------------------------
def test_given_any_result_then_the_json_written_is_what_motos_serialiser_writes(table, monkeypatch):
    from moto.dynamodb.responses import DynamoHandler

    from a3s_local.moto_patches import _plain

    db, name = table
    pairs, written_plain = [], []
    plain = DynamoHandler.serialized

    def both(self, action_result):
        written_plain.append(_plain(action_result.result) is not None)  # else both are moto's serialiser
        pairs.append((plain(self, action_result), DynamoHandler.a3s_serialized_by_moto(self, action_result)))
        return pairs[-1][0]

    monkeypatch.setattr(DynamoHandler, "serialized", both)
    item = {"pk": {"S": "x"}, "sk": {"S": "1"}, "n": {"N": "12.50"}, "b": {"B": b"\x00\xff"}, "t": {"BOOL": True},
            "z": {"NULL": True}, "l": {"L": [{"S": "a"}, {"N": "1"}]},
            "m": {"M": {"k": {"SS": ["u", "v"]}, "bs": {"BS": [b"\x01", b"\x02"]}}}}
    db.put_item(TableName=name, Item=item)
    db.put_item(TableName=name, Item={**item, "sk": {"S": "2"}, "b": {"S": "not binary"}}, ReturnValues="ALL_OLD")
    db.put_item(TableName=name, Item={**item, "sk": {"S": "2"}}, ReturnValues="ALL_OLD")
    db.get_item(TableName=name, Key={"pk": {"S": "x"}, "sk": {"S": "2"}}, ReturnConsumedCapacity="TOTAL")
    db.update_item(TableName=name, Key={"pk": {"S": "x"}, "sk": {"S": "2"}}, UpdateExpression="SET c = :c",
                   ExpressionAttributeValues={":c": {"N": "3"}}, ReturnValues="ALL_NEW")
    db.query(TableName=name, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "x"}}, Limit=1)
    db.batch_get_item(RequestItems={name: {"Keys": [{"pk": {"S": "x"}, "sk": {"S": k}} for k in ("1", "2", "9")]}})
    db.transact_write_items(TransactItems=[{"Put": {"TableName": name, "Item": {"pk": {"S": "y"}, "sk": {"S": "1"}}}}])
    with pytest.raises(db.exceptions.ConditionalCheckFailedException):
        db.put_item(TableName=name, Item=item, ConditionExpression="attribute_not_exists(pk)")
    db.get_item(TableName=name, Key={"pk": {"S": "none"}, "sk": {"S": "none"}})

    assert len(pairs) >= 9  # each call that returned a result (an error may take another path)
    assert written_plain.count(True) >= 9
    for (status, headers, body), (m_status, m_headers, m_body) in pairs:
        assert (status, json.loads(body)) == (m_status, json.loads(m_body))
        assert headers["Content-Type"] == m_headers["Content-Type"]


def test_given_a_binary_attribute_then_the_client_reads_its_bytes(table):
    db, name = table
    db.put_item(TableName=name, Item={"pk": {"S": "bin"}, "sk": {"S": "1"}, "b": {"B": b"\x00\xff"}})

    got = db.get_item(TableName=name, Key={"pk": {"S": "bin"}, "sk": {"S": "1"}})["Item"]
    page = db.query(TableName=name, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "bin"}})

    assert got["b"] == {"B": b"\x00\xff"}
    assert page["Items"][0]["b"] == {"B": b"\x00\xff"}


# -- expressions read once per string ---------------------------------------------------------------
def update(db, name, sk, expression, values, condition=None):
    args = {"TableName": name, "Key": {"pk": {"S": "u"}, "sk": {"S": sk}}, "UpdateExpression": expression,
            "ExpressionAttributeValues": values, "ReturnValues": "ALL_NEW"}
    if condition:
        args["ConditionExpression"] = condition
    return db.update_item(**args)["Attributes"]


def test_given_one_update_expression_with_other_values_then_each_call_applies_its_own(table):
    db, name = table
    expr = "SET v = :v, n = if_not_exists(n, :zero) + :one, l = list_append(if_not_exists(l, :empty), :l) REMOVE gone"
    values = {":zero": {"N": "0"}, ":one": {"N": "1"}, ":empty": {"L": []}}

    first = update(db, name, "1", expr, {**values, ":v": {"S": "a"}, ":l": {"L": [{"S": "a"}]}})
    second = update(db, name, "1", expr, {**values, ":v": {"S": "b"}, ":l": {"L": [{"S": "b"}]}})
    other = update(db, name, "2", expr, {**values, ":v": {"S": "c"}, ":l": {"L": [{"S": "c"}]}})

    assert (first["v"], first["n"]) == ({"S": "a"}, {"N": "1"})
    assert (second["v"], second["n"], second["l"]) == ({"S": "b"}, {"N": "2"}, {"L": [{"S": "a"}, {"S": "b"}]})
    assert (other["v"], other["n"], other["l"]) == ({"S": "c"}, {"N": "1"}, {"L": [{"S": "c"}]})


def test_given_one_condition_with_other_values_then_each_call_is_judged_by_its_own(table):
    db, name = table
    cond = "attribute_not_exists(lease) OR lease <= :now"
    update(db, name, "c", "SET lease = :u", {":u": {"N": "100"}, ":now": {"N": "0"}}, cond)

    with pytest.raises(db.exceptions.ConditionalCheckFailedException):
        update(db, name, "c", "SET lease = :u", {":u": {"N": "200"}, ":now": {"N": "99"}}, cond)
    taken = update(db, name, "c", "SET lease = :u", {":u": {"N": "300"}, ":now": {"N": "100"}}, cond)

    assert taken["lease"] == {"N": "300"}


def test_given_a_bad_expression_then_every_call_fails_the_same_way(table):
    db, name = table

    failures = []
    for _ in range(2):
        with pytest.raises(db.exceptions.ClientError, match="ValidationException"):
            update(db, name, "bad", "SET = :v", {":v": {"S": "x"}})
        with pytest.raises(db.exceptions.ClientError, match="ValidationException"):
            update(db, name, "bad", "SET v = :missing", {":v": {"S": "x"}})
        with pytest.raises(Exception) as err:  # moto's own error for a condition it cannot lex
            update(db, name, "bad", "SET v = :v", {":v": {"S": "x"}}, "v = :v $")
        failures.append((type(err.value), str(err.value)))

    assert failures[0] == failures[1]
    assert "Item" not in db.get_item(TableName=name, Key={"pk": {"S": "u"}, "sk": {"S": "bad"}})


# -- SQS: a cheap clock read per message ------------------------------------------------------------
def test_given_delayed_messages_then_only_the_due_one_is_received_and_counts_stay_right(stack):
    sqs = stack.boto.client("sqs")
    url = sqs.create_queue(QueueName=f"patch-{secrets.token_hex(4)}")["QueueUrl"]
    for i in range(20):
        sqs.send_message(QueueUrl=url, MessageBody=f"later {i}", DelaySeconds=900)
    sqs.send_message(QueueUrl=url, MessageBody="now")

    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=600)["Messages"]
    again = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
    counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]

    assert [m["Body"] for m in got] == ["now"]
    assert again == []  # in flight for its visibility timeout
    assert (counts["ApproximateNumberOfMessagesDelayed"], counts["ApproximateNumberOfMessagesNotVisible"],
            counts["ApproximateNumberOfMessages"]) == ("20", "1", "0")
    sqs.delete_queue(QueueUrl=url)


# -- unsigned requests ----------------------------------------------------------------------------------
def test_given_the_stacks_clients_then_dynamodb_goes_unsigned_and_s3_urls_stay_signed(stack):
    sent = []
    db = stack.boto.client("dynamodb")
    db.meta.events.register("before-send.dynamodb", lambda request, **_: sent.append(dict(request.headers)))
    db.list_tables()
    url = stack.boto.client("s3").generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "k"})

    assert sent and "Authorization" not in sent[0]
    assert "Signature=" in url
