"""The DynamoDB adapter's writes that would outgrow DynamoDB's 400 KB item limit: a domain error
(413 over HTTP), with the messages of the real service as well as moto's; other errors unchanged."""
from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from a3s_core.domain.errors import Conflict, ItemTooLarge
from a3s_core.domain.items import Session
from a3s_core.store.dynamo import DynamoStore


def client_error(code: str, message: str, operation: str, reasons: list[dict] | None = None) -> ClientError:
    response: dict[str, Any] = {"Error": {"Code": code, "Message": message}}
    if reasons is not None:
        response["CancellationReasons"] = reasons
    return ClientError(response, operation)


class FailingClient:
    """Every write fails with the given error."""

    def __init__(self, error: ClientError) -> None:
        self.error = error

    def _fail(self, **_: Any) -> Any:
        raise self.error

    put_item = update_item = transact_write_items = batch_write_item = _fail


def session() -> Session:
    return Session(tenant="t", session_id="sess-1", workspace="/w", model="m")


# PutItem and UpdateItem as DynamoDB (and moto) word them; a transaction cancelled for the size of one item.
TOO_LARGE = [
    client_error("ValidationException", "Item size has exceeded the maximum allowed size", "PutItem"),
    client_error("ValidationException", "Item size to update has exceeded the maximum allowed size", "UpdateItem"),
    client_error("TransactionCanceledException",
                 "Transaction cancelled, please refer cancellation reasons for specific reasons [ValidationError, None]",
                 "TransactWriteItems",
                 [{"Code": "ValidationError", "Message": "Item size has exceeded the maximum allowed size"},
                  {"Code": "None"}]),
]


@pytest.mark.parametrize("error", TOO_LARGE, ids=["put", "update", "transaction"])
def test_given_a_write_over_400_kb_then_item_too_large(error):
    store = DynamoStore(FailingClient(error), "table")
    with pytest.raises(ItemTooLarge) as raised:
        store.save_session(session())
    assert raised.value.status == 413 and "400 KB" in str(raised.value)
    with pytest.raises(ItemTooLarge):
        store.request_control("t", "run-1", inject="x")


def test_given_another_validation_error_then_it_is_not_mistaken_for_a_size_error():
    error = client_error("ValidationException", "One or more parameter values were invalid", "PutItem")
    with pytest.raises(ClientError):
        DynamoStore(FailingClient(error), "table").save_session(session())


def test_given_a_lost_condition_then_it_is_still_a_conflict():
    error = client_error("ConditionalCheckFailedException", "The conditional request failed", "PutItem")
    with pytest.raises(Conflict):
        DynamoStore(FailingClient(error), "table").save_session(session())
