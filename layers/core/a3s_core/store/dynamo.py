"""The DynamoDB adapter of the Store: one table, every key prefixed by the tenant.

Items keep their authoritative state fields (status, version, leases, deadlines) as top-level
attributes so conditions can test them, and the rest of the model as one JSON `doc`.
"""
from __future__ import annotations

import json
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError
from pydantic import BaseModel

from a3s_core.domain.errors import BadRequest, Conflict, Interrupted, ItemTooLarge, NotFound
from a3s_core.domain.items import Control, Event, Run, RunStatus, Session, Step, Task, TaskStatus, Workflow, now_ms
from a3s_core.domain.lanes import LANES
from a3s_core.domain.outcomes import StepOutcome
from a3s_core.store.api_keys import DynamoApiKeys, api_key_item
from a3s_core.store.base import Settlement, WatchKind

_ser, _de = TypeSerializer(), TypeDeserializer()
_TASK_STATE = ("status", "deadline", "lease_owner", "lease_until", "error", "completed_at", "claimed_at")
# `watchers` is written by subscriptions (UpdateItem ADD, no version bump, ctl + 1) and read back with the run.
_RUN_STATE = ("status", "version", "lease_owner", "lease_until", "redrives", "ctl", "watchers")


def _to_ddb(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in item.items() if v is not None}


def _from_ddb(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _de.deserialize(v) for k, v in item.items()}


def _compact_json(model: BaseModel, exclude: set[str]) -> str:
    """The model as JSON without `exclude` and the fields left at a fixed default (an empty list or
    dict counts; a timestamp's factory does not: it would read back as another time)."""
    drop = set(exclude)
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        factory = field.default_factory
        if (factory is None and value == field.default) or (factory in (list, dict) and not value):
            drop.add(name)
    return model.model_dump_json(exclude=drop)


def _session_key(tenant: str, session_id: str) -> dict[str, str]:
    return {"pk": f"T#{tenant}#S#{session_id}", "sk": "SESSION"}


def _session_from(item: dict[str, Any]) -> Session:
    session = Session.model_validate_json(item["doc"])
    session.version, session.expires = int(item["version"]), int(item.get("ttl", 0))
    session.watching = sorted(item.get("watching") or ())  # a string set, changed by subscriptions
    return session


def _control_from(item: dict[str, Any]) -> Control:
    return Control(pause=bool(item.get("pause")), cancel=bool(item.get("cancel")),
                   injections=list(item.get("injections") or []))


def _live_key(tenant: str, run_id: str) -> dict[str, str]:
    """A queued or running run's entry in gsi1: its key never changes while the run is live."""
    return {"gsi1pk": "RUNS#LIVE", "gsi1sk": f"{tenant}#{run_id}"}


def _exchange_key(tenant: str, session_id: str, n: int) -> dict[str, str]:
    """The session's n-th exchange (0-based): the messages of one run, written once when it succeeds."""
    return {"pk": f"T#{tenant}#S#{session_id}", "sk": f"MSG#{n:08d}"}


def _exchange_n(item: dict[str, Any]) -> int:
    """Which exchange of its session an exchange item is (its `MSG#<n>` key)."""
    return int(item["sk"][len("MSG#"):])


def _run_key(tenant: str, run_id: str) -> dict[str, str]:
    return {"pk": f"T#{tenant}#R#{run_id}", "sk": "RUN"}


def _outcome_json(outcome: StepOutcome, step: Step) -> str:
    """A step's outcome as its item keeps it: without what the step says already (its run's id,
    its spec's task id and agent, the session id made of the task id); _step_from puts it back."""
    wire = outcome.wire()
    for name, said in _outcome_said(step.spec, step.key, step.run_id).items():
        if name in wire and wire[name] == said:
            del wire[name]
        else:  # kept, even as null: reading must not put the step's in its place
            wire[name] = wire.get(name)
    return json.dumps(wire, ensure_ascii=False, separators=(",", ":"))


def _outcome_said(spec: dict[str, Any], key: str, run_id: str | None) -> dict[str, Any]:
    task_id = spec.get("task_id", key)
    return {"task_id": task_id, "agent": spec.get("agent"), "session_id": f"task-run-{task_id}",
            **({"run_id": run_id} if run_id else {})}


def _carried(item: dict[str, Any]) -> str | bytes:
    """The events a run's item carries, as JSON (`ev`: text when small, else zlib-compressed)."""
    ev = item.get("ev", "[]")
    return ev if isinstance(ev, str) else zlib.decompress(bytes(ev))


def _item_bytes(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB bills it, near enough: names and values (a number: at most 21 bytes)."""
    size = 0
    for name, value in item.items():
        size += len(name.encode())
        if isinstance(value, (bytes, bytearray)):
            size += len(value)
        elif isinstance(value, str):
            size += len(value.encode())
        elif isinstance(value, bool) or value is None:
            size += 1
        elif isinstance(value, (int, float)):
            size += min(21, len(str(value)) // 2 + 2)
        else:  # a list or set: its members' JSON, roughly
            size += len(json.dumps(value, default=str).encode()) + 3
    return size


def _run_of_key(pk: str) -> tuple[str, str]:
    """(tenant, run_id) of a run's partition key."""
    tenant, run_id = pk[2:].rsplit("#R#", 1)
    return tenant, run_id


def _listing_key(run: Run) -> dict[str, str]:
    """The run's entry in gsi3, a tenant's runs in the order they were made: fixed for its life."""
    return {"gsi3pk": f"T#{run.tenant}#RUNS", "gsi3sk": f"{run.created_at:015d}#{run.run_id}"}


def _task_key(tenant: str, session_id: str, task_id: str) -> dict[str, str]:
    return {"pk": f"T#{tenant}#S#{session_id}", "sk": f"TASK#{task_id}"}


# Every item but an API key carries `ttl`: DynamoDB deletes it RetentionDays after its last write
# (a run's items are written while it runs, so they go within the run's own duration of each other).
DEFAULT_RETENTION_DAYS = 30


def _wf_key(tenant: str, workflow_id: str) -> dict[str, str]:
    return {"pk": f"T#{tenant}#W#{workflow_id}", "sk": "WF"}


def _step_key(tenant: str, workflow_id: str, key: str) -> dict[str, str]:
    return {"pk": f"T#{tenant}#W#{workflow_id}", "sk": f"STEP#{key}"}


def _failed_condition(err: ClientError) -> bool:
    code = err.response["Error"]["Code"]
    if code == "ConditionalCheckFailedException":
        return True
    if code == "TransactionCanceledException":
        reasons = err.response.get("CancellationReasons") or []
        return any(r.get("Code") == "ConditionalCheckFailed" for r in reasons)
    return False


# What DynamoDB (and moto) say when a write would make an item outgrow 400 KB: PutItem and
# BatchWriteItem "Item size has exceeded the maximum allowed size", UpdateItem "Item size to
# update has exceeded the maximum allowed size", a transaction the same as a cancellation reason.
_TOO_LARGE = ("Item size has exceeded the maximum allowed size", "Item size to update has exceeded")
_WRITES = ("put_item", "update_item", "transact_write_items", "batch_write_item")


def _too_large(err: ClientError) -> bool:
    messages = [err.response.get("Error", {}).get("Message") or ""]
    messages += [r.get("Message") or "" for r in err.response.get("CancellationReasons") or []]
    return any(marker in m for m in messages for marker in _TOO_LARGE)


class _SizeCheckedClient:
    """The DynamoDB client, whose writes turn "item too large" into a domain error: it is what the
    request asked to store (too many agents, prompts, results), the caller's 4xx, not the kit's 5xx.
    The failed write changed nothing."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        if name == "_client":  # not set yet (a copy being made): no recursion
            raise AttributeError(name)
        op = getattr(self._client, name)
        if name not in _WRITES:
            return op

        def write(**kwargs: Any) -> Any:
            try:
                return op(**kwargs)
            except ClientError as err:
                if _too_large(err):
                    raise ItemTooLarge("the request would make a stored item exceed DynamoDB's 400 KB item limit; "
                                       "nothing was changed") from err
                raise
        return write


# A DynamoDB item holds at most 400 KB: a run whose checkpoint outgrows this keeps it in S3
# (one object per version, so a failed transaction leaves no half-state behind).
OFFLOAD_BYTES = 300_000
# A checkpoint's events ride in the run's own item while the item stays within one write unit:
# one conditional write instead of a transaction of two items (each billed twice).
CARRIED_BYTES = 1000
# A run's last checkpoint (no lease or wake rewrites it after) carries up to this much, but for one
# that appends an exchange or settles a step (a transaction anyway: carrying saves nothing there
# past one unit). Carried events past COMPRESS_FROM bytes of JSON are compressed.
FINAL_CARRIED_BYTES = 3000
EVENT_BATCH_BYTES = 100_000  # of events in one item (a checkpoint's usually fit in one)
HISTORY_CACHE_SESSIONS = 64  # sessions whose conversations a warm container keeps
MAX_SESSION_WATCHERS = 100   # connections subscribed to one session (a set on its item)
TTL_REFRESH_S = 86_400  # a session's expiry is pushed back by its runs at most once a day
COMPRESS_FROM = 512  # JSON bytes from which a run's, an exchange's or events' document is compressed


class DynamoStore:
    def __init__(self, client: Any, table: str, s3: Any = None, bucket: str = "",
                 retention_days: int = DEFAULT_RETENTION_DAYS) -> None:
        self._db, self._table, self._s3, self._bucket = _SizeCheckedClient(client), table, s3, bucket
        self._retention_s = retention_days * 24 * 3600
        self._exchanges: OrderedDict[tuple[str, str], list[list[dict]]] = OrderedDict()
        self._cache_lock = threading.Lock()

    def _expiry(self) -> int:
        """The `ttl` of an item written now."""
        return int(time.time()) + self._retention_s

    # -- plumbing -------------------------------------------------------------------------
    def _get(self, key: dict[str, str]) -> dict[str, Any] | None:
        out = self._db.get_item(TableName=self._table, Key=_to_ddb(key), ConsistentRead=True)
        return _from_ddb(out["Item"]) if "Item" in out else None

    def _conditional(self, **kwargs: Any) -> dict[str, Any] | None:
        """An UpdateItem/PutItem whose lost condition is an answer (None), not an error."""
        op = self._db.update_item if "UpdateExpression" in kwargs else self._db.put_item
        try:
            return op(TableName=self._table, **kwargs)
        except ClientError as err:
            if _failed_condition(err):
                return None
            raise

    def _query(self, index: str | None = None, limit: int | None = None, **kwargs: Any) -> Iterator[dict]:
        args: dict[str, Any] = {"TableName": self._table, **kwargs}
        if index:
            args["IndexName"] = index
        seen = 0
        while True:
            page = self._db.query(**args)
            for item in page.get("Items", []):
                yield _from_ddb(item)
                seen += 1
                if limit is not None and seen >= limit:
                    return
            if "LastEvaluatedKey" not in page:
                return
            args["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # -- api keys -------------------------------------------------------------------------
    def tenant_for_key(self, key_hash: str) -> str | None:
        return DynamoApiKeys(self._db, self._table).tenant_for_key(key_hash)

    def put_api_key(self, key_hash: str, tenant: str) -> None:
        self._db.put_item(TableName=self._table, Item=api_key_item(key_hash, tenant))

    # -- sessions -------------------------------------------------------------------------
    def _session_item(self, session: Session) -> dict[str, Any]:
        # In gsi1 under the tenant, newest last, so sessions are listed without a scan; the entry
        # keeps its keys for the session's life and expires with it.
        return {**_session_key(session.tenant, session.session_id), "version": session.version,
                "gsi1pk": f"T#{session.tenant}#SESSIONS", "gsi1sk": f"{session.created_at:015d}#{session.session_id}",
                "ttl": self._expiry(), "doc": session.model_dump_json(exclude={"watching", "expires"})}

    def create_session(self, session: Session) -> None:
        if self._conditional(Item=_to_ddb(self._session_item(session)),
                             ConditionExpression="attribute_not_exists(pk)") is None:
            raise Conflict(f"session {session.session_id} exists")

    def list_sessions(self, tenant: str, limit: int = 50) -> list[Session]:
        keys = [{"pk": i["pk"], "sk": i["sk"]} for i in self._query(
            index="gsi1", limit=limit, KeyConditionExpression="gsi1pk = :p", ScanIndexForward=False,
            ExpressionAttributeValues=_to_ddb({":p": f"T#{tenant}#SESSIONS"}))]
        return [_session_from(i) for i in self._in_order(keys, self._batch_get(keys))]

    @staticmethod
    def _in_order(keys: list[dict[str, str]], items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """BatchGetItem answers in any order: put its items back in the order of `keys`."""
        by_key = {(i["pk"], i["sk"]): i for i in items}
        return [by_key[(k["pk"], k["sk"])] for k in keys if (k["pk"], k["sk"]) in by_key]

    def get_session(self, tenant: str, session_id: str) -> Session:
        item = self._get(_session_key(tenant, session_id))
        if item is None:
            raise NotFound(f"session {session_id!r} not found")
        return _session_from(item)

    def save_session(self, session: Session) -> None:
        # The document and version only: `watching` is changed by its own writes.
        expected = session.version
        session.version += 1
        doc = session.model_dump_json(exclude={"watching", "expires"})
        if self._conditional(Key=_to_ddb(_session_key(session.tenant, session.session_id)),
                             UpdateExpression="SET doc = :d, version = :n, #ttl = :ttl",
                             ConditionExpression="version = :v", ExpressionAttributeNames={"#ttl": "ttl"},
                             ExpressionAttributeValues=_to_ddb({":d": doc, ":n": session.version,
                                                                ":v": expected, ":ttl": self._expiry()})) is None:
            session.version = expected
            raise Conflict(f"session {session.session_id} changed underneath")

    # -- runs -----------------------------------------------------------------------------
    def _run_item(self, run: Run) -> dict[str, Any]:
        # The document leaves out what the keys say and what is at its default: the item is
        # rewritten at each step of the run, and each byte past a write unit's KB is paid again.
        # Its times are those of its listing key (made) and of `touched` (changed; a wake's too).
        doc = _compact_json(run, {*_RUN_STATE, "control", "tenant", "run_id", "session_id", "created_at", "updated_at"})
        item = {**_run_key(run.tenant, run.run_id), "session_id": run.session_id,
                **{k: getattr(run, k) for k in _RUN_STATE}, "touched": run.updated_at, "ttl": self._expiry(),
                **self._doc(doc, f"runs/{run.tenant}/{run.run_id}/v{run.version}.json"), **_listing_key(run)}
        # Written only when set (every reader defaults them): the run is rewritten at each step,
        # and most runs are never re-driven, watched, paused, cancelled or injected into, and
        # hold no lease when they are written but for the lease itself.
        optional = {"lease_owner": run.lease_owner, "lease_until": run.lease_until,
                    "redrives": run.redrives, "watchers": run.watchers, "pause": run.control.pause,
                    "cancel": run.control.cancel, "injections": run.control.injections}
        for name, value in optional.items():
            if not value:
                item.pop(name, None)
            else:
                item[name] = value
        # The sparse index of runs a message should be driving, and of those just suspended: a run
        # that waits a moment (a worker's round trip) keeps its entry, so its wake rewrites nothing
        # there; the sweeper takes out one that waits longer (stale_runs).
        if run.status in (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.WAITING):
            item.update(_live_key(run.tenant, run.run_id))
        return item

    def _doc(self, doc: str, s3_key: str) -> dict[str, Any]:
        """A JSON document's attributes: as text when small, else zlib-compressed (`z`, binary: a
        run's checkpoint usually fits one write unit so), else in S3 at `s3_key` past OFFLOAD_BYTES."""
        if len(doc) < COMPRESS_FROM:
            return {"doc": doc}
        packed = zlib.compress(doc.encode(), 6)
        if len(packed) <= OFFLOAD_BYTES:
            return {"z": packed}
        if self._s3 is None:
            raise ValueError(f"a document of {len(doc)} bytes and no bucket is configured")
        self._s3.put_object(Bucket=self._bucket, Key=s3_key, Body=doc.encode())
        return {"doc": "", "doc_key": s3_key}

    def _doc_of(self, item: dict[str, Any]) -> str | bytes:
        if "z" in item:
            return zlib.decompress(bytes(item["z"]))
        if item.get("doc_key"):
            return self._s3.get_object(Bucket=self._bucket, Key=item["doc_key"])["Body"].read()
        return item["doc"]

    def _run_from(self, item: dict[str, Any]) -> Run:
        doc = json.loads(self._doc_of(item))
        doc.update({k: item[k] for k in _RUN_STATE if k in item})
        doc["tenant"], doc["run_id"] = _run_of_key(item["pk"])
        doc["session_id"] = item["session_id"]
        if "created_at" not in doc:  # older items have their times in the document
            doc["created_at"], doc["updated_at"] = int(item["gsi3sk"].split("#", 1)[0]), int(item["touched"])
        doc["lease_owner"] = doc.get("lease_owner") or None
        doc["control"] = _control_from(item)
        doc["carried"] = json.loads(_carried(item)) if "ev" in item else []
        return Run.model_validate(doc)

    def _event_puts(self, tenant: str, run_id: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A checkpoint's events as few items as fit (usually one), each keyed by its last seq: a
        replay overwrites them rather than duplicating them, and a reader after seq n starts at the
        first item whose key is past n."""
        batches: list[list[str]] = [[]]
        size = 0
        for doc in (json.dumps(e, ensure_ascii=False, separators=(",", ":")) for e in events):
            if batches[-1] and size + len(doc) > EVENT_BATCH_BYTES:
                batches.append([])
                size = 0
            batches[-1].append(doc)
            size += len(doc)
        last, puts = events[0]["seq"] - 1 if events else 0, []
        for batch in filter(None, batches):
            last += len(batch)
            doc = "[" + ",".join(batch) + "]"
            puts.append({"Put": {"TableName": self._table, "Item": _to_ddb(
                {"pk": f"T#{tenant}#R#{run_id}", "sk": f"EV#{last:010d}", "ttl": self._expiry(),
                 **({"z": zlib.compress(doc.encode(), 6)} if len(doc) >= COMPRESS_FROM else {"doc": doc})})}})
        return puts

    def create_run(self, run: Run) -> None:
        # One item, listed by gsi3 (written once): the run's first events are its driver's to write.
        if self._conditional(Item=_to_ddb(self._run_item(run)), ConditionExpression="attribute_not_exists(pk)") is None:
            raise Conflict(f"run {run.run_id} exists")

    def get_run(self, tenant: str, run_id: str) -> Run:
        item = self._get(_run_key(tenant, run_id))
        if item is None:
            raise NotFound(f"run {run_id!r} not found")
        return self._run_from(item)

    def run_status(self, tenant: str, run_id: str) -> str | None:
        out = self._db.get_item(TableName=self._table, Key=_to_ddb(_run_key(tenant, run_id)), ConsistentRead=True,
                                ProjectionExpression="#s", ExpressionAttributeNames={"#s": "status"})
        return _from_ddb(out["Item"]).get("status") if "Item" in out else None

    def run_states(self, tenant: str, run_ids: list[str]) -> dict[str, tuple[str, int]]:
        # The run's listing key begins with its creation time: no document is read.
        items = self._batch_get([_run_key(tenant, r) for r in run_ids], projection="pk, #s, gsi3sk",
                                names={"#s": "status"})
        return {i["pk"].rsplit("#R#", 1)[1]: (i["status"], int(i.get("gsi3sk", "0#").split("#")[0])) for i in items}

    def acquire_run(self, tenant: str, run_id: str, owner: str, now: int, lease_ms: int) -> Run | None:
        out = self._conditional(
            Key=_to_ddb(_run_key(tenant, run_id)),
            UpdateExpression="SET #s = :running, lease_owner = :o, lease_until = :u, version = version + :one",
            ConditionExpression="#s IN (:queued, :running) AND "
                                "(attribute_not_exists(lease_owner) OR lease_owner = :none OR lease_until <= :now)",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues=_to_ddb({":running": "running", ":queued": "queued", ":o": owner,
                                               ":u": now + lease_ms, ":one": 1, ":none": "", ":now": now}),
            ReturnValues="ALL_NEW")
        return self._run_from(_from_ddb(out["Attributes"])) if out else None

    def save_run(self, run: Run, events: list[Event], append_to: Session | None = None,
                 settle: Settlement | None = None) -> bool:
        expected = run.version
        run.version += 1
        item = self._run_item(run)
        # The events carried in the run's item and this checkpoint's: still carried if the item
        # stays within a write unit, else all written to event items with this checkpoint.
        carried = [*run.carried, *(e.model_dump(mode="json") for e in events)]
        text = json.dumps(carried, ensure_ascii=False, separators=(",", ":")) if carried else ""
        ev = text if len(text) < COMPRESS_FROM else zlib.compress(text.encode(), 6)
        room = FINAL_CARRIED_BYTES if run.done and append_to is None and settle is None else CARRIED_BYTES
        if text and _item_bytes({**item, "ev": ev}) <= room:
            item["ev"], event_puts = ev, []
        else:
            event_puts = self._event_puts(run.tenant, run.run_id, carried)
            carried = []
        put = {"TableName": self._table, "Item": _to_ddb(item), "ConditionExpression": "version = :v AND ctl = :c",
               "ExpressionAttributeValues": _to_ddb({":v": expected, ":c": run.ctl})}
        # Events that do not fit one item go first, on their own (keyed by seq: a replay overwrites
        # them); the last of them commits with the run.
        for event_put in event_puts[:-1]:
            self._db.put_item(**event_put["Put"])
        items = [{"Put": put}, *event_puts[-1:]]
        settles = self._settle_items(settle) if settle else []
        n = self._next_exchange(run) if append_to is not None else 0
        try:
            for _ in range(20):  # another run of the session appended first: append after it
                try:
                    writes = items + settles + (self._append(run, append_to, n) if append_to else [])
                    if len(writes) == 1:  # the run alone: a conditional put, not a transaction (billed twice)
                        self._db.put_item(**put)
                    else:
                        self._db.transact_write_items(TransactItems=writes)
                    break
                except ClientError as err:
                    reasons = err.response.get("CancellationReasons") or []
                    failed = [i for i, r in enumerate(reasons) if r.get("Code") == "ConditionalCheckFailed"]
                    if settles and failed and len(items) <= failed[0] < len(items) + len(settles):
                        settles = []  # the step has moved on (settled before, or a later attempt): the run alone
                        continue
                    if append_to is None or not failed or failed[0] < len(items):
                        raise
                    if failed[0] > len(items) + len(settles):  # the session's refresh: it has been deleted
                        raise NotFound(f"session {run.session_id!r} not found") from err
                    n = self._exchange_count(run.tenant, run.session_id, n + 1)
            else:
                raise Conflict(f"session {run.session_id} is changing too often; try again")
        except ClientError as err:
            run.version = expected
            if _failed_condition(err):
                self._interrupted_or_conflict(run, err)
            raise
        except (Conflict, NotFound):
            run.version = expected
            raise
        run.carried = carried
        if append_to is not None:
            self._remember_own(run, n)
        return bool(settles)

    def _remember_own(self, run: Run, n: int) -> None:
        """The exchange just written is the session's n-th: a container that knows the n before it
        keeps it too, so the session's next run driven here reads no history."""
        key = (run.tenant, run.session_id)
        with self._cache_lock:
            known = self._exchanges.get(key)
        if known is not None and len(known) == n:
            self._remember(run.tenant, run.session_id, [*known, json.loads(json.dumps(run.messages))])

    def _next_exchange(self, run: Run) -> int:
        """Where the run's exchange goes, as far as this container knows: after those the run
        continues and those it has seen since."""
        with self._cache_lock:
            known = len(self._exchanges.get((run.tenant, run.session_id), ()))
        return max(run.history or 0, known)

    def _exchange_count(self, tenant: str, session_id: str, start: int) -> int:
        """The session's number of exchanges, knowing there are at least `start` (keys only)."""
        items = list(self._query(KeyConditionExpression="pk = :pk AND sk BETWEEN :lo AND :hi", ConsistentRead=True,
                                 ProjectionExpression="sk", ExpressionAttributeValues=_to_ddb(
                                     {":pk": f"T#{tenant}#S#{session_id}", ":lo": f"MSG#{start:08d}",
                                      ":hi": "MSG#99999999"})))
        return _exchange_n(items[-1]) + 1 if items else start

    def _append(self, run: Run, session: Session, n: int) -> list[dict[str, Any]]:
        """What adds run's messages as the session's n-th exchange: the exchange item, once (its
        condition fails if another run took n: the caller counts again). The session item is not
        rewritten (the exchanges count themselves) but for its expiry, pushed back once a day."""
        doc = json.dumps(run.messages, ensure_ascii=False, separators=(",", ":"))
        item: dict[str, Any] = {**_exchange_key(run.tenant, run.session_id, n), "ttl": self._expiry(),
                                **self._doc(doc, f"history/{run.tenant}/{run.session_id}/{run.run_id}.json")}
        writes: list[dict[str, Any]] = [{"Put": {"TableName": self._table, "Item": _to_ddb(item),
                                                 "ConditionExpression": "attribute_not_exists(pk)"}}]
        if session.expires and session.expires < self._expiry() - TTL_REFRESH_S:
            writes.append({"Update": {
                "TableName": self._table, "Key": _to_ddb(_session_key(run.tenant, run.session_id)),
                "UpdateExpression": "SET #ttl = :ttl", "ConditionExpression": "attribute_exists(pk)",
                "ExpressionAttributeNames": {"#ttl": "ttl"},
                "ExpressionAttributeValues": _to_ddb({":ttl": self._expiry()})}})
        return writes

    def history(self, tenant: str, session_id: str, upto: int) -> list[dict]:
        # Exchanges never change once written: this container keeps what it has read, and asks
        # DynamoDB only for those it has not seen (a warm driver reads none for its session's next run).
        known = self._exchanges.get((tenant, session_id), [])
        if len(known) < upto:
            pk = f"T#{tenant}#S#{session_id}"
            items = self._query(KeyConditionExpression="pk = :pk AND sk BETWEEN :lo AND :hi", ConsistentRead=True,
                                ExpressionAttributeValues=_to_ddb({":pk": pk, ":lo": f"MSG#{len(known):08d}",
                                                                   ":hi": f"MSG#{upto - 1:08d}"}))
            known = self._known(tenant, session_id, known, list(items), upto)
        return [m for exchange in known[:upto] for m in exchange]

    def session_with_history(self, tenant: str, session_id: str) -> tuple[Session, list[dict], int]:
        # One query: the exchanges this container has not seen, then the session item ("MSG#..." <
        # "SESSION"; its lane metrics sort before, its tasks after).
        known = self._exchanges.get((tenant, session_id), [])
        items = list(self._query(
            KeyConditionExpression="pk = :pk AND sk BETWEEN :lo AND :hi", ConsistentRead=True,
            ExpressionAttributeValues=_to_ddb({":pk": f"T#{tenant}#S#{session_id}", ":lo": f"MSG#{len(known):08d}",
                                               ":hi": "SESSION"})))
        if not items or items[-1]["sk"] != "SESSION":
            raise NotFound(f"session {session_id!r} not found")
        exchanges = items[:-1]
        n = _exchange_n(exchanges[-1]) + 1 if exchanges else len(known)
        known = self._known(tenant, session_id, known, exchanges, n)
        return _session_from(items[-1]), [m for exchange in known for m in exchange], n

    def _known(self, tenant: str, session_id: str, known: list[list[dict]], items: list[dict[str, Any]],
               upto: int) -> list[list[dict]]:
        """`known` and the exchange items read after it, up to `upto`, kept for the next read. An
        exchange that has expired (its session lived on) is an empty one."""
        known = list(known)
        for item in items:
            while len(known) < _exchange_n(item):
                known.append([])
            known.append(json.loads(self._doc_of(item)))
        known.extend([] for _ in range(upto - len(known)))
        self._remember(tenant, session_id, known)
        return known

    def _remember(self, tenant: str, session_id: str, exchanges: list[list[dict]]) -> None:
        with self._cache_lock:  # the driver may run several runs in threads of one container
            self._exchanges[(tenant, session_id)] = exchanges
            self._exchanges.move_to_end((tenant, session_id))
            while len(self._exchanges) > HISTORY_CACHE_SESSIONS:
                self._exchanges.popitem(last=False)

    def _interrupted_or_conflict(self, run: Run, err: Exception) -> None:
        """Why a checkpoint lost: only a request from outside (the run takes it in) or another writer."""
        item = self._get(_run_key(run.tenant, run.run_id))
        if item is not None and int(item["version"]) == run.version and int(item.get("ctl", 0)) != run.ctl:
            run.control, run.ctl = _control_from(item), int(item.get("ctl", 0))
            run.watchers = int(item.get("watchers", 0))
            raise Interrupted(run.run_id) from err
        raise Conflict(f"run {run.run_id} changed underneath (version {run.version})") from err

    def nudge_run(self, tenant: str, run_id: str) -> bool:
        return self._conditional(
            Key=_to_ddb(_run_key(tenant, run_id)), UpdateExpression="ADD ctl :one",
            ConditionExpression="#s = :running", ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues=_to_ddb({":one": 1, ":running": "running"})) is not None

    def wake_run(self, tenant: str, run_id: str, from_status: str = "waiting") -> bool:
        return self._conditional(
            Key=_to_ddb(_run_key(tenant, run_id)),
            UpdateExpression="SET #s = :queued, version = version + :one, gsi1pk = :p, gsi1sk = :k, touched = :now",
            ConditionExpression="#s = :waiting", ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues=_to_ddb({":queued": "queued", ":waiting": from_status, ":one": 1,
                                               ":p": "RUNS#LIVE", ":k": f"{tenant}#{run_id}", ":now": now_ms()}),
        ) is not None

    def request_control(self, tenant: str, run_id: str, pause: bool | None = None, cancel: bool = False,
                        inject: str | None = None) -> None:
        sets: list[str] = []
        values: dict[str, Any] = {}
        if pause is not None:
            sets.append("pause = :p")
            values[":p"] = pause
        if cancel:
            sets.append("cancel = :c")
            values[":c"] = True
        if inject is not None:
            sets.append("injections = list_append(if_not_exists(injections, :empty), :i)")
            values.update({":empty": [], ":i": [inject]})
        if sets:  # on the run's item, counted: a driver's next checkpoint sees it (Interrupted)
            values[":one"] = 1
            if self._conditional(Key=_to_ddb(_run_key(tenant, run_id)), ConditionExpression="attribute_exists(pk)",
                                 UpdateExpression="SET " + ", ".join(sets) + " ADD ctl :one",
                                 ExpressionAttributeValues=_to_ddb(values)) is None:
                raise NotFound(f"run {run_id!r} not found")

    def get_control(self, tenant: str, run_id: str) -> Control:
        return self.get_run(tenant, run_id).control

    def list_runs(self, tenant: str, session_id: str | None = None, limit: int = 200) -> list[Run]:
        keys = [{"pk": i["pk"], "sk": i["sk"]} for i in self._query(
            index="gsi3", limit=limit, **self._index_query(f"T#{tenant}#RUNS", session_id, "gsi3pk"))][::-1]
        return [self._run_from(i) for i in self._in_order(keys, self._batch_get(keys))]

    @staticmethod
    def _index_query(pk: str, session_id: str | None, key: str = "pk") -> dict[str, Any]:
        """Newest first; one session's only, if given (filtered as read, so the limit counts matches)."""
        values: dict[str, Any] = {":pk": pk}
        args: dict[str, Any] = {"KeyConditionExpression": f"{key} = :pk", "ScanIndexForward": False}
        if session_id is not None:
            values[":s"] = session_id
            args["FilterExpression"] = "session_id = :s"
        return {**args, "ExpressionAttributeValues": _to_ddb(values)}

    def stale_runs(self, before: int, limit: int) -> list[tuple[str, str]]:
        # The index holds live runs by key only (a checkpoint never rewrites it): when each was last
        # touched is read from the runs themselves, 100 to a request.
        found: list[tuple[str, str]] = []
        keys = [_run_key(*i["gsi1sk"].rsplit("#", 1)) for i in self._query(
            index="gsi1", KeyConditionExpression="gsi1pk = :p", ExpressionAttributeValues=_to_ddb({":p": "RUNS#LIVE"}))]
        for item in self._batch_get(keys, "pk, #s, touched", {"#s": "status"}):
            if int(item.get("touched", 0)) >= before:
                continue
            tenant, run_id = _run_of_key(item["pk"])
            if item.get("status") in ("queued", "running"):
                found.append((tenant, run_id))
            elif item.get("status") == "waiting":  # waiting longer than a moment: out of the index
                self._conditional(Key=_to_ddb(_run_key(tenant, run_id)),
                                  UpdateExpression="REMOVE gsi1pk, gsi1sk", ConditionExpression="#s = :w",
                                  ExpressionAttributeNames={"#s": "status"},
                                  ExpressionAttributeValues=_to_ddb({":w": "waiting"}))
        return sorted(found)[:limit]

    def _batch_get(self, keys: list[dict[str, str]], projection: str | None = None,
                   names: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """The items at `keys` that exist (consistent reads, 100 to a request, unprocessed ones again)."""
        out: list[dict[str, Any]] = []
        for i in range(0, len(keys), 100):
            request: dict[str, Any] = {"Keys": [_to_ddb(k) for k in keys[i:i + 100]], "ConsistentRead": True}
            if projection:
                request.update(ProjectionExpression=projection, ExpressionAttributeNames=names or {})
            while request.get("Keys"):
                page = self._db.batch_get_item(RequestItems={self._table: request})
                out.extend(_from_ddb(item) for item in page.get("Responses", {}).get(self._table, []))
                request = page.get("UnprocessedKeys", {}).get(self._table) or {}
        return out

    def count_redrive(self, tenant: str, run_id: str, before: int, now: int) -> int | None:
        # No version bump: a driver that takes the run over afterwards must not conflict on it.
        out = self._conditional(
            Key=_to_ddb(_run_key(tenant, run_id)),
            UpdateExpression="SET redrives = if_not_exists(redrives, :zero) + :one, touched = :now",
            ConditionExpression="#s IN (:queued, :running) AND touched < :before",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues=_to_ddb({":zero": 0, ":one": 1, ":queued": "queued", ":running": "running",
                                               ":before": before, ":now": now}),
            ReturnValues="UPDATED_NEW")
        return int(out["Attributes"]["redrives"]["N"]) if out else None

    def list_events(self, tenant: str, run_id: str, after: int, limit: int = 500) -> list[Event]:
        # The event items after `after`, then the run's own item ("EV#..." < "RUN") for those it carries.
        items = self._query(KeyConditionExpression="pk = :pk AND sk BETWEEN :lo AND :hi",
                            ExpressionAttributeValues=_to_ddb({":pk": f"T#{tenant}#R#{run_id}",
                                                               ":lo": f"EV#{after + 1:010d}", ":hi": "RUN"}),
                            ConsistentRead=True)
        found: list[Event] = []
        for item in items:
            batch = _carried(item) if item["sk"] == "RUN" else self._doc_of(item)
            found.extend(e for e in map(Event.model_validate, json.loads(batch)) if e.seq > after)
            if len(found) >= limit:
                break
        return found[:limit]

    # -- external tasks -------------------------------------------------------------------
    @staticmethod
    def _task_from(item: dict[str, Any]) -> Task:
        doc = json.loads(item["doc"])
        doc.update({k: item[k] for k in _TASK_STATE if k in item})
        doc["tenant"], doc["session_id"] = item["pk"][2:].rsplit("#S#", 1)
        doc["task_id"] = item["sk"][len("TASK#"):]
        doc["lease_owner"] = doc.get("lease_owner") or None
        doc["error"] = doc.get("error") or None
        doc["result"] = json.loads(item["result"]) if "result" in item else None
        return Task.model_validate(doc)

    def create_task(self, task: Task) -> bool:
        item = {**_task_key(task.tenant, task.session_id, task.task_id),
                **{k: getattr(task, k) for k in _TASK_STATE}, "lease_owner": task.lease_owner or "",
                # In gsi1 while pending, by lane, tenant and session (one entry serves a lane's
                # claims, a session's, and the sweeper's look for overdue tasks).
                "gsi1pk": f"PENDING#{task.lane}",
                "gsi1sk": f"{task.tenant}#{task.session_id}#{task.created_at:015d}#{task.task_id}",
                # the document without what its keys say or what is at its default (as a run's)
                "ttl": self._expiry(),
                "doc": _compact_json(task, {*_TASK_STATE, "result", "tenant", "session_id", "task_id"})}
        return self._conditional(Item=_to_ddb(item), ConditionExpression="attribute_not_exists(pk)") is not None

    def get_task(self, tenant: str, session_id: str, task_id: str) -> Task | None:
        item = self._get(_task_key(tenant, session_id, task_id))
        return self._task_from(item) if item else None

    def session_and_tasks(self, tenant: str, session_id: str, task_ids: list[str]) -> tuple[Session, dict[str, Task]]:
        if not task_ids:
            return self.get_session(tenant, session_id), {}
        items = {i["sk"]: i for i in self._batch_get(
            [_session_key(tenant, session_id), *(_task_key(tenant, session_id, t) for t in dict.fromkeys(task_ids))])}
        if "SESSION" not in items:
            raise NotFound(f"session {session_id!r} not found")
        tasks = [self._task_from(i) for sk, i in items.items() if sk != "SESSION"]
        return _session_from(items["SESSION"]), {t.task_id: t for t in tasks}

    def list_pending_tasks(self, tenant: str, session_id: str) -> list[Task]:
        # Only pending tasks are in the index (a finished one leaves it): the read does not grow
        # with the session's history. A query per lane; oldest first.
        keys = [{"pk": i["pk"], "sk": i["sk"]} for lane in LANES for i in self._query(
            index="gsi1", KeyConditionExpression="gsi1pk = :p AND begins_with(gsi1sk, :t)",
            ExpressionAttributeValues=_to_ddb({":p": f"PENDING#{lane}", ":t": f"{tenant}#{session_id}#"}))]
        return sorted(self._pending(keys), key=lambda t: t.created_at)

    def pending_tasks_for_lane(self, tenant: str, lane: str, limit: int) -> list[Task]:
        # Up to `limit` of the tenant's (its sessions' in turn), oldest first among them.
        keys = [{"pk": i["pk"], "sk": i["sk"]} for i in self._query(
            index="gsi1", limit=limit, KeyConditionExpression="gsi1pk = :p AND begins_with(gsi1sk, :t)",
            ExpressionAttributeValues=_to_ddb({":p": f"PENDING#{lane}", ":t": f"{tenant}#"}))]
        return sorted(self._pending(keys), key=lambda t: t.created_at)

    def _pending(self, keys: list[dict[str, str]]) -> list[Task]:
        """The tasks an index named, read from the table, still pending (one may have finished since)."""
        if not keys:
            return []
        tasks = [self._task_from(i) for i in self._in_order(keys, self._batch_get(keys))]
        return [t for t in tasks if t.status == TaskStatus.PENDING]

    def overdue_tasks(self, now: int, limit: int) -> list[Task]:
        keys: list[dict[str, str]] = []
        for lane in LANES:  # a pending task's deadline is in the index (it never changes), so no item is read
            keys.extend({"pk": i["pk"], "sk": i["sk"]} for i in self._query(
                index="gsi1", limit=limit - len(keys), KeyConditionExpression="gsi1pk = :p",
                FilterExpression="deadline <= :now",
                ExpressionAttributeValues=_to_ddb({":p": f"PENDING#{lane}", ":now": now})))
            if len(keys) >= limit:
                break
        return self._pending(keys)

    def finish_task(self, tenant: str, session_id: str, task_id: str, status: str, now: int,
                    result: dict | None = None, error: str | None = None) -> Task | None:
        cond = {"timed_out": " AND deadline <= :now", "cancelled": ""}.get(status, " AND deadline > :now")
        values = {":pending": "pending", ":st": status, ":now": now, ":r": json.dumps(result, ensure_ascii=False),
                  ":e": error or "", ":ttl": self._expiry()}
        out = self._conditional(
            Key=_to_ddb(_task_key(tenant, session_id, task_id)),
            UpdateExpression=("SET #s = :st, #r = :r, #e = :e, completed_at = :now, #ttl = :ttl "
                              "REMOVE gsi1pk, gsi1sk"),
            ConditionExpression="#s = :pending" + cond, ReturnValues="ALL_NEW",
            ExpressionAttributeNames={"#s": "status", "#r": "result", "#e": "error", "#ttl": "ttl"},
            ExpressionAttributeValues=_to_ddb(values),
        )
        return self._task_from(_from_ddb(out["Attributes"])) if out else None

    def claim_task(self, tenant: str, session_id: str, task_id: str, owner: str, now: int,
                   lease_ms: int) -> Task | None:
        out = self._conditional(
            Key=_to_ddb(_task_key(tenant, session_id, task_id)),
            UpdateExpression="SET lease_owner = :o, lease_until = :u, claimed_at = if_not_exists(claimed_at, :now)",
            ConditionExpression="#s = :pending AND deadline > :now AND (lease_owner = :none OR lease_until <= :now)",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues=_to_ddb({":o": owner, ":u": now + lease_ms, ":pending": "pending",
                                               ":none": "", ":now": now}),
            ReturnValues="ALL_NEW")
        return self._task_from(_from_ddb(out["Attributes"])) if out else None

    def add_lane_metrics(self, tenant: str, session_id: str, lane: str, counts: dict[str, int]) -> None:
        names = {f"#c{i}": k for i, k in enumerate(counts)}
        self._db.update_item(
            TableName=self._table, Key=_to_ddb({"pk": f"T#{tenant}#S#{session_id}", "sk": f"METRICS#{lane}"}),
            UpdateExpression="SET #ttl = :ttl ADD " + ", ".join(f"#c{i} :c{i}" for i in range(len(counts))),
            ExpressionAttributeNames={**names, "#ttl": "ttl"},
            ExpressionAttributeValues=_to_ddb({":ttl": self._expiry(),
                                               **{f":c{i}": v for i, v in enumerate(counts.values())}}))

    def lane_metrics(self, tenant: str, session_id: str) -> dict[str, dict[str, int]]:
        items = self._query(KeyConditionExpression="pk = :pk AND begins_with(sk, :m)", ConsistentRead=True,
                            ExpressionAttributeValues=_to_ddb({":pk": f"T#{tenant}#S#{session_id}", ":m": "METRICS#"}))
        return {i["sk"][len("METRICS#"):]: {k: int(v) for k, v in i.items() if k not in ("pk", "sk", "ttl")}
                for i in items}

    # -- workflows ------------------------------------------------------------------------
    _WF_STATE = ("status", "finished", "attempt", "used_tokens", "watchers")
    _STEP_STATE = ("status", "attempt", "stage", "run_id", "started_at", "finished_at")

    def _wf_item(self, wf: Workflow) -> dict[str, Any]:
        return {**_wf_key(wf.tenant, wf.workflow_id), **{k: getattr(wf, k) for k in self._WF_STATE},
                "n": wf.n, "ttl": self._expiry(),
                "doc": _compact_json(wf, {*self._WF_STATE, "tenant", "workflow_id"})}

    def _wf_index_item(self, wf: Workflow) -> dict[str, Any]:
        """The tenant's list of workflows, newest last: listed without a scan, expiring with the workflow."""
        return {"pk": f"T#{wf.tenant}#WFS", "sk": f"{wf.created_at:015d}#{wf.workflow_id}",
                "workflow_id": wf.workflow_id, "session_id": wf.session_id, "ttl": self._expiry()}

    def _step_item(self, step: Step) -> dict[str, Any]:
        item = {**_step_key(step.tenant, step.workflow_id, step.key), "ttl": self._expiry(),
                **{k: getattr(step, k) for k in self._STEP_STATE}, "run_id": step.run_id or "",
                "doc": self._step_doc(step)}
        if step.outcome is not None:
            item["outcome"] = _outcome_json(step.outcome, step)
        return item

    def _step_doc(self, step: Step) -> str:
        """What the step's keys and state attributes do not say (the workflow is rewritten at each
        step's end, the step at its end: each byte past a write unit's KB is paid again)."""
        return _compact_json(step, {*self._STEP_STATE, "outcome", "tenant", "workflow_id", "key"})

    def _merge(self, item: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
        doc = json.loads(item["doc"])
        doc.update({k: item[k] for k in fields if k in item})
        # what the keys say (documents written before they were left out say it too)
        doc["tenant"], doc["workflow_id"] = item["pk"][2:].rsplit("#W#", 1)
        if item["sk"].startswith("STEP#"):
            doc["key"] = item["sk"][len("STEP#"):]
        return doc

    def _wf_from(self, item: dict[str, Any]) -> Workflow:
        return Workflow.model_validate(self._merge(item, self._WF_STATE))

    def create_workflow(self, wf: Workflow, steps: list[Step], fresh: bool = False) -> None:
        # Steps first, then the workflow item, whose appearance commits it all. Under a fresh id
        # nothing can race: 25 steps to a batch, a write unit each. Otherwise 100 to a transaction,
        # each written over only while pending: a create that lost a race cannot reset the winner's
        # settled or staged steps (a pending one is as it was created), and one that died half-way
        # leaves no dead id.
        if fresh:
            self.put_steps(steps)
        for i in range(0, len(steps) if not fresh else 0, 100):
            try:
                self._db.transact_write_items(TransactItems=[
                    {"Put": {"TableName": self._table, "Item": _to_ddb(self._step_item(step)),
                             "ConditionExpression": "attribute_not_exists(pk) OR (#s = :pending AND run_id = :none)",
                             "ExpressionAttributeNames": {"#s": "status"},
                             "ExpressionAttributeValues": _to_ddb({":pending": "pending", ":none": ""})}}
                    for step in steps[i:i + 100]])
            except ClientError as err:
                if _failed_condition(err):
                    raise Conflict(f"workflow {wf.workflow_id} exists") from err
                raise
        try:
            self._db.transact_write_items(TransactItems=[
                {"Put": {"TableName": self._table, "Item": _to_ddb(self._wf_item(wf)),
                         "ConditionExpression": "attribute_not_exists(pk)"}},
                {"Put": {"TableName": self._table, "Item": _to_ddb(self._wf_index_item(wf))}}])
        except ClientError as err:
            if _failed_condition(err):
                raise Conflict(f"workflow {wf.workflow_id} exists") from err
            raise

    def list_workflows(self, tenant: str, session_id: str | None = None, limit: int = 50) -> list[Workflow]:
        found = []
        for i in self._query(limit=limit, **self._index_query(f"T#{tenant}#WFS", session_id)):
            try:
                found.append(self.get_workflow(tenant, i["workflow_id"]))
            except NotFound:
                continue
        return found

    def get_workflow(self, tenant: str, workflow_id: str) -> Workflow:
        item = self._get(_wf_key(tenant, workflow_id))
        if item is None:
            raise NotFound(f"workflow {workflow_id!r} not found")
        return self._wf_from(item)

    def _step_from(self, item: dict[str, Any]) -> Step:
        doc = self._merge(item, self._STEP_STATE)
        doc["run_id"] = doc.get("run_id") or None
        if "outcome" in item:  # with what _outcome_json left out (older outcomes have it all)
            doc["outcome"] = {**_outcome_said(doc["spec"], doc["key"], doc["run_id"]), **json.loads(item["outcome"])}
        return Step.model_validate(doc)

    def list_steps(self, tenant: str, workflow_id: str) -> list[Step]:
        items = self._query(KeyConditionExpression="pk = :pk AND begins_with(sk, :s)", ConsistentRead=True,
                            ExpressionAttributeValues=_to_ddb({":pk": f"T#{tenant}#W#{workflow_id}", ":s": "STEP#"}))
        return [self._step_from(i) for i in items]

    def get_step(self, tenant: str, workflow_id: str, key: str) -> Step | None:
        item = self._get(_step_key(tenant, workflow_id, key))
        return self._step_from(item) if item else None

    def get_steps(self, tenant: str, workflow_id: str, keys: list[str]) -> dict[str, Step]:
        steps = (self._step_from(i) for i in self._batch_get([_step_key(tenant, workflow_id, k) for k in keys]))
        return {s.key: s for s in steps}

    def workflow_with(self, tenant: str, workflow_id: str, key: str | None = None,
                      session_id: str | None = None) -> tuple[Workflow, Step | None, Session | None]:
        keys = [_wf_key(tenant, workflow_id), *([_step_key(tenant, workflow_id, key)] if key else []),
                *([_session_key(tenant, session_id)] if session_id else [])]
        items = {i["sk"]: i for i in self._batch_get(keys)}  # WF, STEP#<key>, SESSION: one of each
        if "WF" not in items:
            raise NotFound(f"workflow {workflow_id!r} not found")
        step = items.get(f"STEP#{key}")
        session = items.get("SESSION")
        return (self._wf_from(items["WF"]), self._step_from(step) if step else None,
                _session_from(session) if session else None)

    def put_steps(self, steps: list[Step]) -> None:
        for i in range(0, len(steps), 25):
            requests = [{"PutRequest": {"Item": _to_ddb(self._step_item(s))}} for s in steps[i:i + 25]]
            while requests:  # BatchWriteItem may leave some unprocessed under load: resend those
                out = self._db.batch_write_item(RequestItems={self._table: requests})
                requests = out.get("UnprocessedItems", {}).get(self._table, [])

    def move_step(self, step: Step, expect_status: str, expect_stage: int, status: str, run_id: str | None,
                  stage: int, spec: dict | None, now: int) -> Step | None:
        sets = "#s = :st, run_id = :r, stage = :stage, started_at = if_not_exists(started_at, :now)"
        values = {":st": status, ":r": run_id or "", ":stage": stage, ":now": now, ":es": expect_status,
                  ":estage": expect_stage, ":a": step.attempt}
        if spec is not None:  # the doc carries the spec: rewrite it with the next stage's spec
            sets += ", doc = :doc"
            values[":doc"] = self._step_doc(step.model_copy(update={"spec": spec}))
        out = self._conditional(
            Key=_to_ddb(_step_key(step.tenant, step.workflow_id, step.key)), UpdateExpression="SET " + sets,
            ConditionExpression="#s = :es AND stage = :estage AND attempt = :a", ReturnValues="ALL_NEW",
            ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues=_to_ddb(values))
        return self._step_from(_from_ddb(out["Attributes"])) if out else None

    def _settle_items(self, settle: Settlement) -> list[dict[str, Any]]:
        step, status, outcome, tokens, now = settle
        return [
            {"Update": {"TableName": self._table, "Key": _to_ddb(_step_key(step.tenant, step.workflow_id, step.key)),
                        "UpdateExpression": "SET #s = :st, outcome = :o, finished_at = :now, run_id = :r, "
                                            "started_at = if_not_exists(started_at, :started)",
                        "ConditionExpression": "#s IN (:pending, :running) AND attempt = :a AND stage = :stage",
                        "ExpressionAttributeNames": {"#s": "status"},
                        "ExpressionAttributeValues": _to_ddb({
                            ":st": status, ":o": _outcome_json(outcome, step), ":now": now, ":r": step.run_id or "",
                            ":started": step.started_at or now, ":pending": "pending", ":running": "running",
                            ":a": step.attempt, ":stage": step.stage})}},
            {"Update": {"TableName": self._table, "Key": _to_ddb(_wf_key(step.tenant, step.workflow_id)),
                        "UpdateExpression": "ADD finished :one, used_tokens :t",
                        "ConditionExpression": "attempt = :a",
                        "ExpressionAttributeValues": _to_ddb({":one": 1, ":t": tokens, ":a": step.attempt})}},
        ]

    def settle_step(self, step: Step, status: str, outcome: StepOutcome, tokens: int, now: int) -> bool:
        try:
            items = self._settle_items(Settlement(step, status, outcome, tokens, now))
            self._db.transact_write_items(TransactItems=items)
            return True
        except ClientError as err:
            if _failed_condition(err):
                return False
            raise

    def finish_workflow(self, tenant: str, workflow_id: str, attempt: int, status: str, when_all_done: bool) -> bool:
        cond = "#s = :running AND attempt = :a" + (" AND finished >= n" if when_all_done else "")
        return self._conditional(
            Key=_to_ddb(_wf_key(tenant, workflow_id)), UpdateExpression="SET #s = :st",
            ConditionExpression=cond, ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues=_to_ddb({":st": status, ":running": "running", ":a": attempt})) is not None

    def reopen_workflow(self, wf: Workflow, expect_attempt: int) -> bool:
        reopened = self._conditional(
            Item=_to_ddb(self._wf_item(wf)), ConditionExpression="#s <> :running AND attempt = :a",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues=_to_ddb({":running": "running", ":a": expect_attempt})) is not None
        if reopened:  # its place in the list lives as long as the workflow now does
            self._db.put_item(TableName=self._table, Item=_to_ddb(self._wf_index_item(wf)))
        return reopened

    # -- push subscriptions ---------------------------------------------------------------
    # A watcher is the item sk=W#<connection> in the watched thing's partition, so a lookup is
    # one Query of the partition the engine writes anyway; a run's item counts its watchers, so
    # a run nobody watches costs no lookup at all. Items expire with the connection (2 h).
    @staticmethod
    def _watch_key(tenant: str, kind: WatchKind, key: str, connection_id: str) -> dict[str, str]:
        part = {"run": "R", "workflow": "W", "lane": "L", "session": "S"}[kind]
        return {"pk": f"T#{tenant}#{part}#{key}", "sk": f"W#{connection_id}"}

    @staticmethod
    def _connection_key(tenant: str, connection_id: str) -> dict[str, str]:
        return {"pk": f"T#{tenant}#C#{connection_id}", "sk": "CONN"}

    def open_connection(self, tenant: str, connection_id: str, expires: int) -> None:
        self._db.put_item(TableName=self._table, Item=_to_ddb({**self._connection_key(tenant, connection_id),
                                                                "ttl": expires}))

    def close_connection(self, tenant: str, connection_id: str) -> list[tuple[str, str]]:
        out = self._db.delete_item(TableName=self._table, Key=_to_ddb(self._connection_key(tenant, connection_id)),
                                   ReturnValues="ALL_OLD")
        subs = _from_ddb(out.get("Attributes") or {}).get("subs") or set()
        return sorted(tuple(s.split("#", 1)) for s in subs)

    def add_watcher(self, tenant: str, kind: WatchKind, key: str, connection_id: str, expires: int,
                    counted: bool = True) -> None:
        if kind == "session":
            return self._watch_session(tenant, key, connection_id, expires)
        quiet = kind == "workflow" and not counted
        watcher = {"Put": {"TableName": self._table, "ConditionExpression": "attribute_not_exists(pk)",
                           "Item": _to_ddb({**self._watch_key(tenant, kind, key, connection_id), "ttl": expires,
                                            **({"quiet": True} if quiet else {})})}}
        target: dict[str, Any] = {"TableName": self._table, "ConditionExpression": "attribute_exists(pk)"}
        if kind == "run":
            target = {"Update": {**target, "Key": _to_ddb(_run_key(tenant, key)),
                                 "UpdateExpression": "ADD watchers :one, ctl :one",  # a driver's save sees it
                                 "ExpressionAttributeValues": _to_ddb({":one": 1})}}
        elif quiet:  # for the end alone (always looked up): the workflow's steps still look none up
            target = {"ConditionCheck": {**target, "Key": _to_ddb(_wf_key(tenant, key))}}
        elif kind == "workflow":  # counted, so a workflow nobody watches costs its steps no lookup
            target = {"Update": {**target, "Key": _to_ddb(_wf_key(tenant, key)),
                                 "UpdateExpression": "ADD watchers :one",
                                 "ExpressionAttributeValues": _to_ddb({":one": 1})}}
        try:
            self._db.transact_write_items(TransactItems=[watcher] + ([target] if kind != "lane" else []))
        except ClientError as err:
            reasons = [r.get("Code") for r in err.response.get("CancellationReasons") or []]
            if len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed":
                raise NotFound(f"{kind} {key!r} not found") from err
            if not reasons or reasons[0] != "ConditionalCheckFailed":
                raise  # else: this connection watches it already
        self._db.update_item(TableName=self._table, Key=_to_ddb(self._connection_key(tenant, connection_id)),
                             UpdateExpression="ADD subs :s SET #ttl = if_not_exists(#ttl, :ttl)",
                             ExpressionAttributeNames={"#ttl": "ttl"},
                             ExpressionAttributeValues=_to_ddb({":s": {f"{kind}#{key}"}, ":ttl": expires}))

    def _watch_session(self, tenant: str, session_id: str, connection_id: str, expires: int) -> None:
        """A session's watchers are a set on its item: the driver has them from the read it makes
        anyway, so pushing a session's runs costs no lookup."""
        if self._conditional(Key=_to_ddb(_session_key(tenant, session_id)), UpdateExpression="ADD watching :c",
                             ConditionExpression="attribute_exists(pk) AND "
                                                 "(attribute_not_exists(watching) OR size(watching) < :max)",
                             ExpressionAttributeValues=_to_ddb({":c": {connection_id}, ":max": MAX_SESSION_WATCHERS})
                             ) is None:
            if connection_id in self.get_session(tenant, session_id).watching:  # NotFound: not yours
                return
            raise BadRequest(f"{MAX_SESSION_WATCHERS} connections watch session {session_id!r} already")
        self._db.update_item(TableName=self._table, Key=_to_ddb(self._connection_key(tenant, connection_id)),
                             UpdateExpression="ADD subs :s SET #ttl = if_not_exists(#ttl, :ttl)",
                             ExpressionAttributeNames={"#ttl": "ttl"},
                             ExpressionAttributeValues=_to_ddb({":s": {f"session#{session_id}"}, ":ttl": expires}))

    def remove_watcher(self, tenant: str, kind: WatchKind, key: str, connection_id: str) -> bool:
        if kind == "session":
            out = self._conditional(Key=_to_ddb(_session_key(tenant, key)), UpdateExpression="DELETE watching :c",
                                    ConditionExpression="contains(watching, :id)", ReturnValues="UPDATED_OLD",
                                    ExpressionAttributeValues=_to_ddb({":c": {connection_id}, ":id": connection_id}))
            if out is None:
                return False
            self._conditional(Key=_to_ddb(self._connection_key(tenant, connection_id)),
                              UpdateExpression="DELETE subs :s", ConditionExpression="attribute_exists(pk)",
                              ExpressionAttributeValues=_to_ddb({":s": {f"session#{key}"}}))
            return True
        out = self._db.delete_item(TableName=self._table, ReturnValues="ALL_OLD",
                                   Key=_to_ddb(self._watch_key(tenant, kind, key, connection_id)))
        if "Attributes" not in out:
            return False
        if kind == "run":  # never below zero, whatever raced with it
            self._conditional(Key=_to_ddb(_run_key(tenant, key)), UpdateExpression="ADD watchers :minus, ctl :one",
                              ConditionExpression="watchers > :zero",
                              ExpressionAttributeValues=_to_ddb({":minus": -1, ":zero": 0, ":one": 1}))
        elif kind == "workflow" and not out["Attributes"].get("quiet"):
            self._conditional(Key=_to_ddb(_wf_key(tenant, key)), UpdateExpression="ADD watchers :minus",
                              ConditionExpression="watchers > :zero",
                              ExpressionAttributeValues=_to_ddb({":minus": -1, ":zero": 0}))
        self._conditional(Key=_to_ddb(self._connection_key(tenant, connection_id)), UpdateExpression="DELETE subs :s",
                          ConditionExpression="attribute_exists(pk)",
                          ExpressionAttributeValues=_to_ddb({":s": {f"{kind}#{key}"}}))
        return True

    def watchers(self, tenant: str, kind: WatchKind, key: str) -> list[str]:
        if kind == "session":
            return self.get_session(tenant, key).watching
        pk = self._watch_key(tenant, kind, key, "")["pk"]
        items = self._query(KeyConditionExpression="pk = :pk AND begins_with(sk, :w)", ProjectionExpression="sk",
                            ExpressionAttributeValues=_to_ddb({":pk": pk, ":w": "W#"}))
        return [i["sk"][2:] for i in items]


if TYPE_CHECKING:
    from a3s_core.store.base import Store

    _contract: type[Store] = DynamoStore  # mypy holds every method to the Store contract
