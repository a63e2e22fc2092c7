"""A function's cold start pays only for what it uses: clients are built on first use, one each,
and the authorizer (one GetItem) imports neither the models nor the engine. The figures are
scripts/bench_coldstart.py's; these tests keep the shape that makes them."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from a3s_core.domain.lanes import LANES
from a3s_core.engine.queues import MemoryQueues
from a3s_core.runtime import Lazy, Runtime, Settings
from a3s_core.store.memory import MemoryStore

REPO = Path(__file__).resolve().parents[2]
ENV = {"A3S_TABLE": "table", "A3S_RUNS_QUEUE_URL": "https://sqs/runs", "A3S_BUCKET": "bucket",
       **{f"A3S_LANE_QUEUE_{lane.upper()}": f"https://sqs/{lane}" for lane in LANES}}


class FakeDynamo:
    def __init__(self, items: dict[str, str]) -> None:
        self.items, self.calls = items, []

    def get_item(self, **kwargs):
        self.calls.append(kwargs)
        tenant = self.items.get(kwargs["Key"]["pk"]["S"])
        return {"Item": {**kwargs["Key"], "tenant_id": {"S": tenant}}} if tenant else {}


class FakeSession:
    """Records which clients are built."""

    def __init__(self, dynamo: FakeDynamo) -> None:
        self.built: list[str] = []
        self.dynamo = dynamo

    def client(self, service: str, **_: object):
        self.built.append(service)
        return self.dynamo if service == "dynamodb" else object()


def test_given_the_environment_when_the_runtime_is_built_then_no_client_is_built_yet():
    session = FakeSession(FakeDynamo({}))

    rt = Runtime.from_env(ENV, session=session)

    assert session.built == []
    assert rt.settings.table == "table"


def test_given_a_known_key_when_the_authorizer_looks_it_up_then_one_consistent_getitem_on_the_only_client_built():
    dynamo = FakeDynamo({"APIKEY#abc": "acme"})
    session = FakeSession(dynamo)
    rt = Runtime.from_env(ENV, session=session)

    assert rt.tenant_for_key("abc") == "acme"
    assert rt.tenant_for_key("unknown") is None
    assert session.built == ["dynamodb"]
    assert dynamo.calls[0] == {"TableName": "table", "Key": {"pk": {"S": "APIKEY#abc"}, "sk": {"S": "APIKEY"}},
                               "ConsistentRead": True}


def test_given_an_injected_runtime_without_a_key_lookup_when_a_key_is_looked_up_then_its_store_answers():
    store = MemoryStore()
    store.put_api_key("abc", "acme")
    rt = Runtime(settings=Settings.from_env(ENV), store=store, queues=MemoryQueues())

    assert rt.tenant_for_key("abc") == "acme"


def test_given_many_threads_when_they_first_use_a_lazy_object_together_then_it_is_built_once():
    builds: list[int] = []
    gate = threading.Barrier(8)

    def build():
        builds.append(1)
        time.sleep(0.05)  # a slow build (a client's is): without the lock, the others would build too
        return {"built": len(builds)}

    lazy = Lazy(build)
    seen: list[object] = []

    def use():
        gate.wait()
        seen.append(lazy.get("built"))

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert builds == [1] and seen == [1] * 8


# What each function's module must not import: the measured cold-start costs it does not need.
NOT_IMPORTED = {
    "authorizer": ("pydantic", "a3s_core.domain.items", "a3s_core.engine", "a3s_core.store.dynamo", "jsonschema",
                   "boto3"),
    "api": ("jsonschema", "aws_lambda_powertools.event_handler.openapi.models", "a3s_core.engine.driver", "boto3",
            "a3s_core.api.views"),
    "run_driver": ("jsonschema", "boto3"),
    "sweeper": ("a3s_core.engine.dispatch", "a3s_core.engine.driver", "jsonschema", "boto3"),
    "runs_dlq": ("a3s_core.engine.dispatch", "a3s_core.engine.driver", "jsonschema", "boto3"),
    "lane_worker": ("a3s_core.engine.driver", "jsonschema", "boto3"),
}


@pytest.mark.parametrize("function", sorted(NOT_IMPORTED))
def test_given_a_function_when_its_module_is_imported_then_it_leaves_out_what_its_first_request_does_not_need(function):
    code = ("import json, sys; sys.path[:0] = sys.argv[1:]; import app; "
            "print(json.dumps(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code, str(REPO / "functions" / function),
                           str(REPO / "layers" / "core")], capture_output=True, text=True, check=True,
                          env={"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-1", **ENV})
    modules = set(json.loads(done.stdout.splitlines()[-1]))

    assert [m for m in NOT_IMPORTED[function] if m in modules] == []


def test_given_threads_first_using_different_clients_when_they_are_built_then_the_session_builds_one_at_a_time():
    class OneAtATime(FakeSession):
        def __init__(self) -> None:
            super().__init__(FakeDynamo({}))
            self.inside, self.most = 0, 0

        def client(self, service: str, **kwargs: object):
            self.inside += 1
            self.most = max(self.most, self.inside)
            time.sleep(0.05)  # a slow build (a real one is): overlapping calls would show here
            self.inside -= 1
            return super().client(service, **kwargs)

    session = OneAtATime()
    rt = Runtime.from_env(ENV, session=session)
    gate = threading.Barrier(3)

    def use(client):
        gate.wait()
        client.resolve()

    threads = [threading.Thread(target=use, args=(c,)) for c in (rt.s3, rt.store._db._client, rt.queues._sqs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(session.built) == ["dynamodb", "s3", "sqs"] and session.most == 1


def test_given_the_api_module_when_imported_then_the_collector_is_on_and_what_the_imports_made_is_frozen():
    """Its imports run with the collector off (a cold start's full collection finds nothing there):
    it must be on again once they are made, or a long-lived process would never collect."""
    code = ("import gc, json, sys; sys.path[:0] = sys.argv[1:]; import app; "
            "print(json.dumps([gc.isenabled(), gc.get_freeze_count()]))")
    done = subprocess.run([sys.executable, "-c", code, str(REPO / "functions" / "api"), str(REPO / "layers" / "core")],
                          capture_output=True, text=True, check=True,
                          env={"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-1", **ENV})
    enabled, frozen = json.loads(done.stdout.splitlines()[-1])

    assert enabled is True and frozen > 10_000
