"""Two narrow patches that make moto's in-memory DynamoDB behave, and cost, like the service under
the embedded stack's threads. Applied once, process-wide, before the stack starts; nothing deployed
imports this module.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

_MOTO_LOCK = threading.RLock()


def atomic_dynamodb() -> None:
    """DynamoDB applies each write, and its condition, atomically; moto's in-memory tables do not
    under threads (two conditional writes can both pass). The embedded stack runs many handlers
    at once, so it serialises moto's table operations to be as faithful as the real service.

    moto also deep-copies every table a transaction touches, to roll back a failed one: a cost
    that grows with the table and made long sessions crawl. Under the lock, copying just the
    items the transaction writes is an equivalent rollback."""
    import copy

    import moto.dynamodb.models as models
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.dynamo_type import DynamoType

    if getattr(DynamoDBBackend, "a3s_atomic", False):
        return

    class TablesUncopied:  # moto's `copy` module, except that a Table is not deep-copied
        def deepcopy(self, obj: Any, memo: Any = None) -> Any:
            return obj if isinstance(obj, models.Table) else copy.deepcopy(obj, memo)

        def __getattr__(self, name: str) -> Any:
            return getattr(copy, name)

    models.copy = TablesUncopied()  # type: ignore[assignment]  # a stand-in with the module's interface
    transact = DynamoDBBackend.transact_write_items

    def touched(backend: Any, entries: list[dict]) -> list[tuple[Any, Any, Any, Any]]:
        out = []
        for entry in entries:
            op = next(iter(entry.values()))
            table = backend.tables.get(op.get("TableName"))
            if table is None:
                continue
            key = op.get("Key") or op.get("Item") or {}
            hash_key = DynamoType(key[table.hash_key_attr])
            range_key = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
            holder = table.items[hash_key] if range_key is not None else table.items
            slot = range_key if range_key is not None else hash_key
            out.append((holder, slot, copy.deepcopy(holder.get(slot)), table))
        return out

    def atomic_transact(self: Any, transact_items: list[dict]) -> None:
        with _MOTO_LOCK:
            saved = touched(self, transact_items)
            try:
                return transact(self, transact_items)
            except Exception:
                for holder, slot, item, _table in saved:  # undo what the failed transaction wrote
                    if item is None:
                        holder.pop(slot, None)
                    else:
                        holder[slot] = item
                raise

    for name in ("put_item", "update_item", "delete_item", "get_item", "query", "scan"):
        original = getattr(DynamoDBBackend, name)

        def atomic(self: Any, *args: Any, __original: Callable = original, **kwargs: Any) -> Any:
            with _MOTO_LOCK:
                return __original(self, *args, **kwargs)

        setattr(DynamoDBBackend, name, atomic)
    DynamoDBBackend.transact_write_items = atomic_transact  # type: ignore[method-assign]
    # moto's request handler reads and copies items outside the backend's methods too (UpdateItem
    # deep-copies the item it is about to change, reads serialise what they return): a whole
    # request holds the lock, so no thread copies an item while another changes it.
    from moto.dynamodb.responses import DynamoHandler

    handle = DynamoHandler.call_action

    def atomic_request(self: Any, *args: Any, **kwargs: Any) -> Any:
        with _MOTO_LOCK:
            return handle(self, *args, **kwargs)

    DynamoHandler.call_action = atomic_request  # type: ignore[method-assign]
    DynamoDBBackend.a3s_atomic = True  # type: ignore[attr-defined]


def partition_query() -> None:
    """A Query reads one partition (or one index's matches) in DynamoDB; moto's Table.query starts
    from `all_items()`, which sorts the whole table on every call, so each query cost O(n log n) in
    the table's size and long sessions slowed the whole stack. Query sorts what it keeps itself
    (by range key, or by the index's keys), so here it starts from the partition alone, or from
    the table's items unsorted for an index."""
    from moto.dynamodb.models.table import Table

    if getattr(Table, "a3s_partition_query", False):
        return
    original_query, original_all_items = Table.query, Table.all_items
    scope = threading.local()  # the table a query on this thread reads, and what it starts from

    def all_items(self: Any) -> list[Any]:
        current = getattr(scope, "current", None)
        if current is not None and current[0] is self:
            return current[1]()
        return original_all_items(self)

    def query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")  # moto passes it by position

        def start() -> list[Any]:
            if not self.range_key_attr:
                return list(self.items.values())
            if index_name:
                return [item for partition in self.items.values() for item in partition.values()]
            return list(self.items.get(hash_key, {}).values())

        scope.current = (self, start)
        try:
            return original_query(self, hash_key, *args, **kwargs)
        finally:
            scope.current = None

    Table.all_items = all_items  # type: ignore[method-assign]
    Table.query = query  # type: ignore[method-assign]
    Table.a3s_partition_query = True  # type: ignore[attr-defined]


def faithful_dynamodb() -> None:
    atomic_dynamodb()
    partition_query()
