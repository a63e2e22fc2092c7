"""Narrow patches that make moto behave, and cost, like the services under the embedded stack's
threads: DynamoDB's atomic writes and partition-bound queries, and moto's per-request work that AWS
does not have (a shape-driven serialiser, a clock read per queued message). Applied once,
process-wide, before the stack starts; nothing deployed imports this module. What a client reads is
unchanged: tests/integration/test_moto_patches.py holds each to moto's own answer.
"""
from __future__ import annotations

import base64
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
    (by range key, or by the index's keys), so here it starts from the partition alone, only the
    items its sort key condition admits (moto sized and sorted every item of the partition before
    testing the condition: a session's reads grew with its history), or from the table's items
    unsorted for an index. One difference at a page's edge: a page that ends on the partition's
    last matching item carries no LastEvaluatedKey (moto gave one if any item followed it; a
    reader pages until there is none either way)."""
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
        # moto passes these by position: range_comparison, range_objs, ..., index_name at 6
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        comparison = args[0] if args else kwargs.get("range_comparison")
        bounds = args[1] if len(args) > 1 else kwargs.get("range_objs")

        def start() -> list[Any]:
            if not self.range_key_attr:
                return list(self.items.values())
            if index_name:
                return [item for partition in self.items.values() for item in partition.values()]
            partition = self.items.get(hash_key, {}).values()
            if comparison:  # DynamoDB reads only the sort keys in range: moto sized and sorted them all
                return [item for item in partition if item.range_key.compare(comparison, bounds)]
            return list(partition)

        scope.current = (self, start)
        try:
            return original_query(self, hash_key, *args, **kwargs)
        finally:
            scope.current = None

    Table.all_items = all_items  # type: ignore[method-assign]
    Table.query = query  # type: ignore[method-assign]
    Table.a3s_partition_query = True  # type: ignore[attr-defined]


def _plain(value: Any) -> Any:
    """The JSON moto's serialiser would write for a DynamoDB result, or None where it might write
    something else (dates, objects, None in a list): those go to the serialiser. A None member is
    left out, as the serialiser leaves it out; bytes (a binary attribute, the only blob DynamoDB
    returns) are written in base64, as the serialiser writes a blob."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if v is None:
                continue
            v2 = _plain(v)
            if v2 is None or not isinstance(k, str):
                return None
            out[k] = v2
        return out
    if isinstance(value, list):
        items = [_plain(v) for v in value]
        return None if any(v is None for v in items) else items
    if isinstance(value, (str, int, float)):  # bool is an int
        return value
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return None


def plain_dynamodb_responses() -> None:
    """DynamoDB's results are JSON already (attribute values as moto keeps them on the wire); moto
    walks each through the operation's output shape to write it, which cost more than the
    operation itself. A result made only of JSON's own types and bytes is written as it is (see
    `_plain`); anything else, and every error, goes through moto's serialiser."""
    import json

    from moto.core.responses import ActionResult
    from moto.dynamodb.responses import DynamoHandler, DynamoResult

    if getattr(DynamoHandler, "a3s_plain", False):
        return
    serialized = DynamoHandler.serialized

    def plain(self: Any, action_result: ActionResult) -> Any:
        body = _plain(action_result.result) if type(action_result) in (ActionResult, DynamoResult) else None
        if body is None:
            return serialized(self, action_result)
        headers = {"Content-Type": "application/x-amz-json-1.0", **self.response_headers}
        return 200, headers, json.dumps(body)

    DynamoHandler.serialized = plain  # type: ignore[method-assign]
    DynamoHandler.a3s_serialized_by_moto = serialized  # type: ignore[attr-defined]  # tests compare the two
    DynamoHandler.a3s_plain = True  # type: ignore[attr-defined]


def cheap_request_overhead() -> None:
    """Costs of every moto request that AWS does not have: the action's name is looked up in the
    list of the handler class's methods, rebuilt by `inspect` on each request (cached per class
    here: a class's methods are fixed once the patches above are in), a regex stamps an XML
    request id into every body, JSON ones too (skipped where there is none to stamp), and every
    queued message reads the wall clock through datetime arithmetic, twice, whenever a queue is
    scanned for visible messages, so a queue holding a run's delayed timers made each send and
    receive slower (`time.time()` here: the same epoch milliseconds, a fraction of the cost)."""
    import functools
    import time

    import moto.core.responses as responses
    import moto.sqs.models as sqs_models

    if getattr(responses, "a3s_cheap", False):
        return
    responses.method_names_from_class = functools.lru_cache(maxsize=None)(responses.method_names_from_class)
    enrich = responses.BaseResponse._enrich_response

    def enrich_response(headers: Any, body: Any) -> Any:
        # moto stamps the request id into an XML body by a regex over the whole of it: a JSON body
        # (DynamoDB's, a queue's) has no <RequestId> to stamp, so only the headers are done
        if isinstance(body, str) and "<RequestId>" not in body:
            return enrich(headers, "")[0], body
        return enrich(headers, body)

    responses.BaseResponse._enrich_response = staticmethod(enrich_response)  # type: ignore[method-assign]
    clock = sqs_models.unix_time_millis

    def unix_time_millis(dt: Any = None) -> float:
        return time.time() * 1000.0 if dt is None else clock(dt)

    sqs_models.unix_time_millis = unix_time_millis
    responses.a3s_cheap = True  # type: ignore[attr-defined]


def cheap_expressions() -> None:
    """moto reads an UpdateItem's expressions twice (the handler checks them, the backend applies
    them), lexing each string and re-parsing it each time, then deep-copies the tree before its ten
    validating passes, each of which rebuilds its dispatch table at every node: an UpdateItem cost
    four GetItems. Here a string is lexed and parsed once: its token queue is kept (each parse gets
    a fresh queue of the same immutable tokens), and so is its tree, which both readers share as
    neither changes it (the handler only looks for names in it; the validator works on a copy).
    That copy is made from the tree's pickle, kept beside it (a fifth of deepcopy's time), and a
    pass keeps its dispatch table. Errors are not kept: a bad expression fails each time."""
    import copy
    import functools
    import pickle
    from collections import deque

    import moto.dynamodb.parsing.validators as validators
    from moto.dynamodb.comparisons import ConditionExpressionParser
    from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser, Node  # type: ignore[attr-defined]
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]

    if getattr(UpdateExpressionParser, "a3s_cached", False):
        return
    parse = UpdateExpressionParser.make.__func__
    trees: dict[str, Any] = {}          # expression -> its tree, shared, never changed
    pickled: dict[int, bytes] = {}      # id of a kept tree -> its pickle (the tree lives in `trees`)

    def make(cls: Any, expression_str: str) -> Any:
        tree = trees.get(expression_str)
        if tree is None:
            tree = parse(cls, expression_str)
            if len(trees) < 512:  # an application's expressions are few; past that, parsed each time
                with _MOTO_LOCK:
                    if expression_str not in trees:
                        pickled[id(tree)] = pickle.dumps(tree, protocol=pickle.HIGHEST_PROTOCOL)
                        trees[expression_str] = tree
                    tree = trees[expression_str]
        return tree

    lex = ConditionExpressionParser._lex_condition_expression

    @functools.lru_cache(maxsize=512)
    def lexed(expression: str) -> tuple:
        probe = ConditionExpressionParser.__new__(ConditionExpressionParser)
        probe.condition_expression = expression
        return tuple(lex(probe))  # immutable tokens with empty children, never changed in place

    def lex_cached(self: Any) -> Any:
        return deque(lexed(self.condition_expression))

    def clone(obj: Any, memo: Any = None) -> Any:
        if isinstance(obj, Node):
            kept = pickled.get(id(obj))
            return pickle.loads(kept if kept is not None else pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
        return copy.deepcopy(obj, memo)

    def dispatch(self: Any) -> tuple[dict, tuple]:
        table = self.__dict__.get("_a3s_dispatch")
        if table is None:
            mapping = self._processing_map()
            table = self.__dict__["_a3s_dispatch"] = (mapping, tuple(mapping))
        return table

    def process(self: Any, node: Any) -> Any:
        for class_key, processor in dispatch(self)[0].items():
            if isinstance(node, class_key):
                return processor(node)
        return None

    UpdateExpressionParser.make = classmethod(make)
    ConditionExpressionParser._lex_condition_expression = lex_cached  # type: ignore[method-assign]
    validators.deepcopy = clone  # type: ignore[assignment]
    DepthFirstTraverser.nodes_to_be_processed = lambda self: dispatch(self)[1]
    DepthFirstTraverser.process = process
    UpdateExpressionParser.a3s_cached = True


def cheap_user_agent() -> None:
    """botocore rebuilds each request's User-Agent twice, passing every component through a pure
    function, character by character: 3-4% of the stack's time. Its answers are kept
    (a client's components are few and fixed). Nothing else of botocore is touched."""
    import functools

    import botocore.useragent as useragent

    if hasattr(useragent.sanitize_user_agent_string_component, "cache_info"):
        return
    useragent.sanitize_user_agent_string_component = functools.lru_cache(maxsize=1024)(
        useragent.sanitize_user_agent_string_component)


def apply_all() -> None:
    """Every patch above, once per process (each is a no-op the second time)."""
    atomic_dynamodb()
    partition_query()
    plain_dynamodb_responses()
    cheap_request_overhead()
    cheap_expressions()
    cheap_user_agent()
