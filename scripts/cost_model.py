"""What bench_cost.py counts beyond bench_common's calls, and how it becomes dollars.

CostCounter adds to ApiCounter: DynamoDB write and read request units as on-demand billing counts
them, from the sizes of the items in moto's table (before and after each write) and in each read's
answer; the gsi1 writes each table write causes; item bytes written; SQS requests in 64 KB chunks.
FunctionClock times every Lambda invocation of the embedded stack per function. PRICES and
`dollars` turn per-unit figures into $ per 1M units (us-east-1, on demand; the model's own cost is
not included).
"""
from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter
from typing import Any

from bench_common import ApiCounter

KB = 1024
SQS_CHUNK = 64 * KB
# template.yaml's indexes: key attributes, and what each projects besides the keys (None: ALL)
INDEXES: dict[str, tuple[tuple[str, str], tuple[str, ...] | None]] = {
    "gsi1": (("gsi1pk", "gsi1sk"), ("deadline",)),
    "gsi3": (("gsi3pk", "gsi3sk"), ("session_id",)),
}

# us-east-1, on demand (list prices).
PRICES = {
    "lambda_request": 0.20 / 1e6,
    "lambda_gb_s": 0.0000133334,          # arm64
    "ddb_wru": 0.625 / 1e6,
    "ddb_rru": 0.125 / 1e6,
    "sqs_request": 0.40 / 1e6,
    "http_api_request": 1.00 / 1e6,
    "ws_message": 1.00 / 1e6,              # API Gateway WebSocket: per message (32 KB units), both ways
    "ws_connection_minute": 0.25 / 1e6,
    "sfn_standard_transition": 25.0 / 1e6,
    "sfn_express_request": 1.00 / 1e6,
    "sfn_express_gb_s": 0.00001667,        # billed at 64 MB at least
    "secrets_api_call": 0.05 / 1e4,
}


# -- item sizes ------------------------------------------------------------------------------------
def value_size(v: dict) -> int:
    """DynamoDB's size of one typed attribute value (numbers: ~1 byte per 2 significant digits + 1)."""
    (t, x), = v.items()
    if t == "S":
        return len(x.encode())
    if t == "N":
        return len(x.strip("-").replace(".", "").strip("0")) // 2 + 1 + 1
    if t == "B":
        return len(x) if isinstance(x, (bytes, bytearray)) else math.ceil(len(x) * 3 / 4)
    if t in ("BOOL", "NULL"):
        return 1
    if t in ("SS", "NS", "BS"):
        return sum(value_size({t[0]: e}) for e in x)
    if t == "L":
        return 3 + sum(1 + value_size(e) for e in x)
    if t == "M":
        return 3 + sum(len(k.encode()) + 1 + value_size(e) for k, e in x.items())
    return len(json.dumps(x))


def item_size(item: dict | None) -> int:
    return sum(len(k.encode()) + value_size(v) for k, v in (item or {}).items())


class _Entry:
    """An item's entry in one index: its index key, what the entry holds, and its size."""

    def __init__(self, key: tuple, content: tuple, size: int) -> None:
        self.key, self.content, self.size = key, content, size


class _Stored:
    """An item as it stands in moto's table: its size, and its entry in each index it is in."""

    def __init__(self, size: int, entries: dict[str, _Entry]) -> None:
        self.size, self.entries = size, entries


def _stored(table: str, key: dict) -> _Stored | None:
    """Read moto's backend directly (no API call, so nothing is counted)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    from a3s_local.moto_patches import _MOTO_LOCK

    try:
        with _MOTO_LOCK:
            item = dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].get_item(table, key)
            if item is None:
                return None
            entries = {}
            for index, (keys, projected) in INDEXES.items():
                if not all(k in item.attrs for k in keys):
                    continue
                names = list(item.attrs) if projected is None else ["pk", "sk", *keys, *projected]
                content = tuple((k, str(item.attrs[k].value)) for k in names if k in item.attrs)
                size = item.size() if projected is None else sum(len(k) + len(v) for k, v in content)
                entries[index] = _Entry(tuple(item.attrs[k].value for k in keys), content,
                                        size + 100)  # + the index's per-item overhead
            return _Stored(item.size(), entries)
    except Exception:  # an unknown table or key shape: nothing to measure
        return None


def _write_targets(op: str, api: dict) -> list[tuple[str, dict, bool]]:
    """(table, key, transactional) of each item a write call writes."""
    out: list[tuple[str, dict, bool]] = []
    if op in ("PutItem", "UpdateItem", "DeleteItem"):
        key = api.get("Key") or {k: api["Item"][k] for k in ("pk", "sk") if k in (api.get("Item") or {})}
        out.append((api.get("TableName", ""), key, False))
    elif op == "TransactWriteItems":
        for entry in api.get("TransactItems") or []:
            for action, body in entry.items():
                key = body.get("Key") or {k: body["Item"][k] for k in ("pk", "sk") if k in (body.get("Item") or {})}
                out.append((body.get("TableName", ""), key, True))  # a ConditionCheck too: billed as a write
    elif op == "BatchWriteItem":
        for table, requests in (api.get("RequestItems") or {}).items():
            for r in requests:
                body = r.get("PutRequest") or r.get("DeleteRequest") or {}
                key = body.get("Key") or {k: body["Item"][k] for k in ("pk", "sk") if k in (body.get("Item") or {})}
                out.append((table, key, False))
    return out


def units(size: int, unit: int) -> int:
    return max(1, math.ceil(size / unit))


# -- the counter -----------------------------------------------------------------------------------
class CostCounter(ApiCounter):
    """ApiCounter, plus capacity units and bytes. `self.cost`: Counter of
    wru, wru_table, wru_gsi, gsi_writes, rru, ddb_item_bytes_written, sqs_requests, sqs_bytes."""

    def __init__(self, queue_names: dict[str, str], **options: Any) -> None:
        super().__init__(queue_names, **options)
        self.cost: Counter[str] = Counter()
        self.cost_by_origin: dict[str, Counter[str]] = {}   # route as requested (before relabel) -> units

    def before_call(self, model: Any, params: dict, **kw: Any) -> None:
        api = getattr(self.local, "params", None) or {}
        super().before_call(model, params, **kw)
        self.local.api = api
        self.local.before = None
        if self._ignored() or model.service_model.service_name != "dynamodb":
            return
        if model.name in ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"):
            self.local.before = [(t, k, tx, _stored(t, k)) for t, k, tx in _write_targets(model.name, api)]

    def after_call(self, model: Any, parsed: dict, http_response: Any = None, **kw: Any) -> None:
        super().after_call(model, parsed, http_response, **kw)
        if self._ignored():
            return
        service, op = model.service_model.service_name, model.name
        api = getattr(self.local, "api", None) or {}
        add: Counter[str] = Counter()
        if service == "dynamodb":
            failed = "Error" in (parsed or {})
            for table, key, tx, old in getattr(self.local, "before", None) or []:
                new = None if failed else _stored(table, key)
                self._write_units(add, old, new, tx, failed)
            if op == "GetItem":
                add["rru"] += units(item_size((parsed or {}).get("Item")), 4 * KB) * (1 if api.get("ConsistentRead") else 0.5)
            elif op in ("Query", "Scan"):
                size = sum(item_size(i) for i in (parsed or {}).get("Items") or [])
                add["rru"] += units(size, 4 * KB) * (1 if api.get("ConsistentRead") else 0.5)
        elif service == "sqs":
            add["sqs_requests"] += self._sqs_requests(op, api, parsed or {})
        elif service == "secretsmanager":
            add["secrets_calls"] += 1
        if add:
            with self._lock:
                self.cost.update(add)
                self.cost_by_origin.setdefault(self._origin(), Counter()).update(add)

    @staticmethod
    def _write_units(add: Counter, old: _Stored | None, new: _Stored | None, tx: bool, failed: bool) -> None:
        """On-demand: 1 KB units of the larger of the item before and after, x2 in a transaction; a
        failed conditional write still bills the item it checked. A change to an item's entry in an
        index (its keys or projected attributes) bills the index by the entry's size: added,
        removed or changed one write, a changed key two (delete + put); a write that leaves the
        entry as it was costs the index nothing."""
        size = max(old.size if old else 0, new.size if new else 0)
        w = units(size, KB) * (2 if tx else 1)
        add["wru_table"] += w
        add["wru"] += w
        if failed:
            return
        add["ddb_item_bytes_written"] += new.size if new else 0
        gsi = 0
        for index in INDEXES:
            before = old.entries.get(index) if old else None
            after = new.entries.get(index) if new else None
            if before and after:
                if before.content != after.content:
                    writes = 1 if before.key == after.key else 2
                    gsi += units(after.size, KB) * writes
                    add["gsi_writes"] += writes
            elif before or after:
                gsi += units((after or before).size, KB)  # type: ignore[union-attr]
                add["gsi_writes"] += 1
        add["wru_gsi"] += gsi
        add["wru"] += gsi

    @staticmethod
    def _sqs_requests(op: str, api: dict, parsed: dict) -> int:
        """Each 64 KB chunk of a request's payload is billed as one request."""
        if op == "SendMessage":
            size = len((api.get("MessageBody") or "").encode()) + len(json.dumps(api.get("MessageAttributes") or {}))
        elif op == "SendMessageBatch":
            size = sum(len((e.get("MessageBody") or "").encode()) for e in api.get("Entries") or [])
        elif op == "ReceiveMessage":
            size = sum(len((m.get("Body") or "").encode()) for m in parsed.get("Messages") or [])
        else:
            size = 0
        return units(size, SQS_CHUNK)

    def snapshot(self) -> dict[str, Any]:
        out = super().snapshot()
        with self._lock:
            out["cost"] = Counter(self.cost)
            out["cost_by_origin"] = {k: Counter(v) for k, v in self.cost_by_origin.items()}
        return out


def attach_cost_counter(stack: Any, **options: Any) -> CostCounter:
    """bench_common.attach_counter, with a CostCounter."""
    import bench_common

    original = bench_common.ApiCounter
    bench_common.ApiCounter = CostCounter  # type: ignore[misc]
    try:
        return bench_common.attach_counter(stack, **options)  # type: ignore[return-value]
    finally:
        bench_common.ApiCounter = original  # type: ignore[misc]


# -- Lambda time -----------------------------------------------------------------------------------
class FunctionClock:
    """Time of every invocation of the embedded stack's functions, per function: the CPU time of the
    invoking thread (`seconds`: the duration Lambda would bill, estimated: the same code, on this
    machine, moto's work standing in for the calls' round trips) and the wall time (`wall`). On a
    busy or shared machine the wall time also holds waits for a CPU, and with many invocations at
    once (a parallel step's) waits for the one process's lock, which a Lambda would not bill."""

    def __init__(self, stack: Any) -> None:
        self.memory = {fid: fn.memory for fid, fn in stack.functions.items()}
        self.invocations: Counter[str] = Counter()
        self.seconds: Counter[str] = Counter()
        self.wall: Counter[str] = Counter()
        self._lock = threading.Lock()
        for fid, fn in stack.functions.items():
            fn.invoke = self._timed(fid, fn.invoke)

    def _timed(self, fid: str, invoke: Any) -> Any:
        def timed(event: dict) -> Any:
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                return invoke(event)
            finally:
                with self._lock:
                    self.invocations[fid] += 1
                    self.seconds[fid] += time.thread_time() - c0
                    self.wall[fid] += time.perf_counter() - t0
        return timed

    def snapshot(self) -> dict[str, Counter]:
        with self._lock:
            return {"invocations": Counter(self.invocations), "seconds": Counter(self.seconds),
                    "wall": Counter(self.wall)}


# -- dollars ---------------------------------------------------------------------------------------
def dollars(unit: dict[str, Any]) -> dict[str, float]:
    """$ per unit by line, from one unit's figures (see bench_cost.Window.per_unit)."""
    lam = unit["lambda"]
    out = {
        "lambda_requests": lam["invocations"] * PRICES["lambda_request"],
        "lambda_gb_s": lam["gb_s"] * PRICES["lambda_gb_s"],
        "dynamodb_writes": unit["dynamodb"]["wru"] * PRICES["ddb_wru"],
        "dynamodb_reads": unit["dynamodb"]["rru"] * PRICES["ddb_rru"],
        "sqs": unit["sqs_requests"] * PRICES["sqs_request"],
        "api_gateway": unit["http_requests"] * PRICES["http_api_request"],
        "secrets_manager": unit.get("secrets_calls", 0) * PRICES["secrets_api_call"],
        # API Gateway WebSocket: messages both ways in 32 KB units, and each minute a connection is open
        "ws_messages": unit.get("ws_messages", 0) * PRICES["ws_message"],
        "ws_connection_minutes": unit.get("ws_connection_minutes", 0) * PRICES["ws_connection_minute"],
    }
    out["total"] = sum(out.values())
    return out


def step_functions(transitions: float, express_requests: float, express_seconds: float | None,
                   other: float) -> dict[str, float | None]:
    """The same unit of work orchestrated by Step Functions: Standard bills each state transition;
    Express bills a request and its duration at 64 MB (it has no callback pattern: a wait would be
    duration). `other`: $ of the work the states still need (the model-turn Lambdas, the worker's queue)."""
    return {"standard": transitions * PRICES["sfn_standard_transition"] + other,
            "express": (express_requests * PRICES["sfn_express_request"]
                        + express_seconds * 64 / 1024 * PRICES["sfn_express_gb_s"] + other)
            if express_seconds is not None else None}
