"""Events pushed over the WebSocket API, on the embedded stack (connections routed in-process as
API Gateway routes them): order, completeness and latency, tenant isolation, watchers' lifetime,
lanes and workflows, an idle worker's requests, and the fallback to polling."""
from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from a3s_local.embedded import LOCAL_TENANT
from a3s_local.websocket import LocalSocket, Refused

PUSH_BUDGET_MS = 200
MULTI_TOOL = ('work\n/tool write {"file_path": "a.txt", "content": "one"}\n'
              '/tool read {"file_path": "a.txt"}\n/tool ls {"path": "."}')


def frames_until(sock: Any, done: Any, timeout: float = 20.0) -> list[tuple[float, dict]]:
    """(arrival ms, frame) of every frame until done(frame) says so."""
    out: list[tuple[float, dict]] = []
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(sock.recv(deadline - time.monotonic()))
        out.append((time.time() * 1000, frame))
        if done(frame):
            return out


def run_ended(frame: dict) -> bool:
    return any(e["type"] == "run_end" for e in frame.get("events", []))


@pytest.fixture
def commits(stack, monkeypatch):
    """seq -> wall-clock ms at which the checkpoint holding that event committed."""
    store, at = stack.runtime.store, {}
    save = store.save_run

    def timed(run, events, *args, **kwargs):
        settled = save(run, events, *args, **kwargs)
        now = time.time() * 1000
        at.update({(run.run_id, e.seq): now for e in events})
        return settled

    monkeypatch.setattr(store, "save_run", timed)
    return at


@pytest.fixture
def held(stack, monkeypatch):
    """Runs are taken by the driver only once the test lets them go (a gate the test owns)."""
    gate, store = threading.Event(), stack.runtime.store
    acquire = store.acquire_run

    def gated(*args, **kwargs):
        assert gate.wait(30), "the test never let the run go"
        return acquire(*args, **kwargs)

    monkeypatch.setattr(store, "acquire_run", gated)
    yield gate
    gate.set()


def test_given_a_subscription_when_the_run_commits_then_every_event_arrives_in_order_complete_and_within_200_ms(
        stack, session, events, commits, held):
    handle = session.send_async(MULTI_TOOL)
    sock = stack.transport().open_socket()
    try:
        sock.send(json.dumps({"action": "subscribe", "run_id": handle.run_id, "after": 0}))
        first = frames_until(sock, lambda f: f["type"] == "subscribed")
        held.set()  # subscribed: the driver may take the run now
        pushed = frames_until(sock, run_ended)
    finally:
        sock.close()

    got = [e for _, f in first + pushed for e in f.get("events", [])]
    assert [e["seq"] for e in got] == list(range(1, len(got) + 1))  # in order, no gap, no repeat
    assert got == events.all(handle.run_id)  # complete: what GET events says, field for field
    assert len(got) >= 10
    late = {e["seq"]: round(arrived - commits[(handle.run_id, e["seq"])])
            for arrived, f in pushed for e in f.get("events", [])}
    print("ms from commit to arrival, by seq:", late)
    assert late and max(late.values()) <= PUSH_BUDGET_MS, late


def test_given_a_run_that_has_ended_when_subscribing_after_a_seq_then_the_catch_up_holds_the_rest_and_says_done(
        stack, session, events):
    result = session.send("hello")
    run_id = result.run_id
    everything = events.all(run_id)
    sock = stack.transport().open_socket()
    try:
        sock.send(json.dumps({"action": "subscribe", "run_id": run_id, "after": 1}))
        got = frames_until(sock, lambda f: f["type"] == "subscribed")
    finally:
        sock.close()
    assert result.status == "succeeded"
    assert [e for _, f in got for e in f.get("events", [])] == everything[1:]
    assert got[-1][1] == {"type": "subscribed", "run_id": run_id, "status": "succeeded", "done": True,
                          "next": everything[-1]["seq"]}


def test_given_a_wrong_key_when_connecting_then_the_connection_is_refused(stack):
    with pytest.raises(Refused) as refused:
        LocalSocket(stack.connections, "not-a-key")
    assert refused.value.status == 403
    assert stack.connections.connect({}, {"key": "a3s-local-key"}, lambda _: None)  # a browser's ?key= works


def intruder_answer(stack, tenant: str, subscribe: dict) -> dict:
    """What another tenant's connection is told when it asks to subscribe."""
    other = LocalSocket(stack.connections, stack.tenant_key(tenant))
    try:
        other.send(json.dumps({"action": "subscribe", **subscribe}))
        return json.loads(other.recv(10))
    finally:
        other.close()


def test_given_another_tenants_run_when_subscribing_then_an_error_frame_and_no_watcher(stack, session):
    handle = session.send_async("mine")
    handle.wait(timeout=30)
    frame = intruder_answer(stack, "ws-intruder", {"run_id": handle.run_id})
    assert frame["type"] == "error" and frame["status"] == 404, frame
    store = stack.runtime.store
    assert store.watchers("ws-intruder", "run", handle.run_id) == []
    assert store.watchers(LOCAL_TENANT, "run", handle.run_id) == []
    assert store.get_run(LOCAL_TENANT, handle.run_id).watchers == 0


@pytest.mark.parametrize("frame", [
    "not json", "[]", '{"action": "dance"}', '{"action": "subscribe"}',
    '{"action": "subscribe", "run_id": "r", "lane": "execute"}', '{"action": "subscribe", "lane": "nowhere"}',
    '{"action": "subscribe", "run_id": "r", "after": -1}', '{"action": "subscribe", "run_id": "a#b"}'])
def test_given_a_bad_frame_then_a_400_error_frame_and_the_connection_stays(stack, frame):
    sock = stack.transport().open_socket()
    try:
        sock.send(frame)
        answer = json.loads(sock.recv(10))
        sock.send(json.dumps({"action": "subscribe", "lane": "query"}))
        after = json.loads(sock.recv(10))
    finally:
        sock.close()
    assert answer["type"] == "error" and answer["status"] == 400, answer
    assert after["type"] == "subscribed", after


def test_given_watchers_when_the_connection_closes_then_they_are_removed_and_the_counter_drops(stack, session):
    handle = session.send_async("watched")
    handle.wait(timeout=30)
    store = stack.runtime.store
    sock = stack.transport().open_socket()
    sock.send(json.dumps({"action": "subscribe", "run_id": handle.run_id, "after": 0}))
    frames_until(sock, lambda f: f["type"] == "subscribed")
    sock.send(json.dumps({"action": "subscribe", "lane": "execute"}))
    frames_until(sock, lambda f: f["type"] == "subscribed")
    assert store.watchers(LOCAL_TENANT, "run", handle.run_id) == [sock.connection_id]
    assert sock.connection_id in store.watchers(LOCAL_TENANT, "lane", "execute")
    assert store.get_run(LOCAL_TENANT, handle.run_id).watchers == 1

    sock.close()

    assert store.watchers(LOCAL_TENANT, "run", handle.run_id) == []
    assert sock.connection_id not in store.watchers(LOCAL_TENANT, "lane", "execute")
    assert store.get_run(LOCAL_TENANT, handle.run_id).watchers == 0


def test_given_a_connection_gone_without_disconnect_when_the_engine_posts_then_its_watcher_is_dropped(
        stack, session, events):
    session.set_lane_handler("execute", "external", 60_000)
    handle = session.send_async('build\n/tool bash {"command": "make"}')
    task_id = events.wait_for(handle.run_id, "external_task_pending")["task_id"]
    store = stack.runtime.store
    store.add_watcher(LOCAL_TENANT, "run", handle.run_id, "gone-connection", int(time.time()) + 60)
    assert session.complete_external_task(task_id, result={"output": "built"})
    handle.wait(timeout=30)
    assert "gone-connection" not in store.watchers(LOCAL_TENANT, "run", handle.run_id)


def test_given_a_lane_subscription_then_pending_tasks_come_as_catch_up_and_new_ones_are_pushed(
        stack, session, events):
    session.set_lane_handler("execute", "external", 60_000)
    first = session.send_async('one\n/tool bash {"command": "echo 1"}')
    first_task = events.wait_for(first.run_id, "external_task_pending")["task_id"]
    sock = stack.transport().open_socket()
    try:
        sock.send(json.dumps({"action": "subscribe", "lane": "execute"}))
        caught = frames_until(sock, lambda f: f["type"] == "subscribed")
        second = session.send_async('two\n/tool bash {"command": "echo 2"}')
        second_task = events.wait_for(second.run_id, "external_task_pending")["task_id"]
        pushed = frames_until(sock, lambda f: f.get("task_id") == second_task)
    finally:
        sock.close()
        for run in (first, second):
            run.cancel()
    assert first_task in [f.get("task_id") for _, f in caught]
    task = pushed[-1][1]
    assert task["type"] == "task" and task["lane"] == "execute" and task["command_type"] == "bash"


def test_given_a_workflow_subscription_then_each_settled_step_and_the_end_are_pushed(stack, session):
    started = session._t.request("POST", f"/sessions/{session.session_id}/workflows", {
        "kind": "parallel", "specs": [{"task_id": "a", "agent": "general", "prompt": "one"},
                                      {"task_id": "b", "agent": "general", "prompt": "two"}]})
    sock = stack.transport().open_socket()
    try:
        sock.send(json.dumps({"action": "subscribe", "workflow_id": started["workflow_id"]}))
        got = frames_until(sock, lambda f: f.get("done") is True)
    finally:
        sock.close()
    kinds = [f["type"] for _, f in got]
    assert "subscribed" in kinds
    # Settled before the subscription or after: the ack or the notices say so, and the end comes last.
    assert got[-1][1]["type"] in ("workflow", "subscribed")
    if got[-1][1]["type"] == "workflow":
        assert got[-1][1] == {"type": "workflow", "workflow_id": started["workflow_id"], "done": True}


def test_given_a_subscription_to_a_workflow_end_alone_then_no_step_is_pushed_or_counted_and_the_end_is(
        stack, session, held):
    started = session._t.request("POST", f"/sessions/{session.session_id}/workflows", {
        "kind": "parallel", "specs": [{"task_id": "a", "agent": "general", "prompt": "one"},
                                      {"task_id": "b", "agent": "general", "prompt": "two"}]})
    wid, store = started["workflow_id"], stack.runtime.store
    sock = stack.transport().open_socket()
    try:
        sock.send(json.dumps({"action": "subscribe", "workflow_id": wid, "steps": False}))
        frames_until(sock, lambda f: f["type"] == "subscribed")
        assert store.get_workflow(LOCAL_TENANT, wid).watchers == 0  # its steps look no watcher up
        held.set()  # the children may run now
        got = frames_until(sock, lambda f: f.get("done") is True)
        sock.send(json.dumps({"action": "subscribe", "workflow_id": wid, "steps": "no"}))
        refused = frames_until(sock, lambda f: f["type"] == "error")
    finally:
        sock.close()
    assert [f for _, f in got] == [{"type": "workflow", "workflow_id": wid, "done": True}]
    assert refused[-1][1]["status"] == 400 and "steps" in refused[-1][1]["message"]
    assert store.get_workflow(LOCAL_TENANT, wid).watchers == 0


# -- the SDK ------------------------------------------------------------------------------------
class Counting:
    """A transport that counts the HTTP requests made through it."""

    def __init__(self, inner: Any, socket: Any = None) -> None:
        self.inner, self.requests, self._socket = inner, [], socket

    def request(self, method: str, path: str, body: Any = None, query: dict | None = None) -> Any:
        self.requests.append((method, path))
        return self.inner.request(method, path, body, query)

    def open_socket(self) -> Any:
        if self._socket is None:
            raise ConnectionRefusedError("no WebSocket here")
        return self._socket()


class ClosingSocket:
    """The stack's in-process connection, closed by the peer once `frames` frames (of `kind`, if
    given) have come."""

    def __init__(self, stack: Any, frames: int, kind: str | None = None) -> None:
        self.inner, self.frames, self.kind, self.seen = stack.transport().open_socket(), frames, kind, 0

    def send(self, text: str) -> None:
        self.inner.send(text)

    def recv(self, timeout: float) -> str:
        if self.seen >= self.frames:
            raise ConnectionError("closed by the peer")
        text = self.inner.recv(timeout)
        self.seen += self.kind is None or json.loads(text).get("type") == self.kind
        return text

    def close(self) -> None:
        self.inner.close()


class Polling(Counting):
    """A transport with no WebSocket API at all (as an HttpTransport with ws_url="")."""

    open_socket = None  # type: ignore[assignment]


def test_given_the_push_path_when_following_a_run_then_the_sdk_yields_what_get_events_says_with_few_requests(
        stack, session, events):
    transport = Counting(stack.transport(), stack.transport().open_socket)
    from a3s_serverless.session import RunHandle

    handle = session.send_async(MULTI_TOOL)
    got = list(RunHandle(transport, handle.run_id).events())
    assert got == events.all(handle.run_id)
    assert len(transport.requests) <= 3, transport.requests  # pushed, not polled (a quiet read at most)


@pytest.mark.parametrize("kind", [Polling, Counting])  # no WebSocket API; one that refuses the connection
def test_given_no_websocket_when_following_and_waiting_then_the_sdk_polls_as_before(stack, session, events, kind):
    from a3s_serverless.session import RunHandle

    transport = kind(stack.transport())
    handle = session.send_async(MULTI_TOOL)
    got = list(RunHandle(transport, handle.run_id).events())
    result = RunHandle(transport, handle.run_id).wait(timeout=30)
    assert got == events.all(handle.run_id)
    assert result.status == "succeeded"
    assert any(path.endswith("/events") for _, path in transport.requests)


def test_given_a_socket_that_closes_mid_run_then_the_sdk_goes_on_by_polling_from_where_it_was(
        stack, session, events):
    from a3s_serverless.session import RunHandle

    handle = session.send_async(MULTI_TOOL)
    transport = Counting(stack.transport(), lambda: ClosingSocket(stack, frames=2))
    assert list(RunHandle(transport, handle.run_id).events()) == events.all(handle.run_id)


class VirtualMinute:
    """A socket whose silence costs no wall time: a recv with nothing to read moves the clock
    the test owns on by its timeout, and stops the worker once `span` seconds have passed."""

    def __init__(self, inner: Any, stop: threading.Event, span: float) -> None:
        self.inner, self.stop, self.span, self.now = inner, stop, span, 0.0

    def clock(self) -> float:
        return self.now

    def send(self, text: str) -> None:
        self.inner.send(text)

    def recv(self, timeout: float) -> str:
        try:
            return self.inner.recv(0)
        except TimeoutError:
            self.now += timeout
            if self.now >= self.span:
                self.stop.set()
            raise

    def close(self) -> None:
        self.inner.close()


def test_given_an_idle_worker_on_the_push_path_then_it_makes_fewer_than_10_requests_a_minute(stack, tmp_path):
    from a3s_serverless.worker import Worker

    stop = threading.Event()
    socket = VirtualMinute(stack.transport().open_socket(), stop, span=60.0)
    transport = Counting(stack.transport(), lambda: socket)
    worker = Worker(transport, "generate", str(tmp_path), handler=lambda t: {"success": True},
                    clock=socket.clock)
    worker.run(stop)
    assert socket.now >= 60.0
    assert len(transport.requests) < 10, transport.requests
    assert transport.requests == [("POST", "/lanes/generate/claim")] * len(transport.requests)


def test_given_a_worker_on_the_push_path_when_a_task_is_made_then_it_claims_it_at_once(stack, session):
    from a3s_serverless.worker import Worker

    session.set_lane_handler("query", "external", 60_000)
    transport = Counting(stack.transport(), stack.transport().open_socket)
    worker = Worker(transport, "query", "/tmp", handler=lambda t: {"success": True, "result": {"output": "found"}})
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        began = time.monotonic()
        result = session.send_async('look\n/tool grep {"pattern": "x"}').wait(timeout=30)
        took = time.monotonic() - began
    finally:
        stop.set()
        thread.join(timeout=10)
    assert "found" in result.text
    assert took < 10  # told at once: the safety poll alone would take a minute
    assert worker.completed == 1


# -- the SDK's kept connection: a session watched once, its runs' events pushed ----------------------
def test_given_a_kept_connection_when_a_session_sends_again_then_the_start_is_its_only_request(stack, workspace):
    from a3s_serverless import Agent

    transport = Counting(stack.transport(), stack.transport().open_socket)
    session = Agent(transport, local=True).session(str(workspace), permissive=True)
    try:
        session.send("first")  # connects and subscribes to the session
        transport.requests.clear()
        result = session.send(MULTI_TOOL)
        assert result.status == "succeeded" and result.tool_calls_count == 3 and result.total_tokens > 0
        assert transport.requests == [("POST", f"/sessions/{session.session_id}/runs")], transport.requests
        watching = stack.runtime.store.get_session(LOCAL_TENANT, session.session_id).watching
        assert len(watching) == 1  # one connection, subscribed once, for every run of the session
    finally:
        session.close()


def test_given_a_run_followed_after_it_ended_then_the_kept_connection_gives_all_of_it_at_once(
        stack, workspace, events):
    from a3s_serverless import Agent

    transport = Counting(stack.transport(), stack.transport().open_socket)
    session = Agent(transport, local=True).session(str(workspace), permissive=True)
    try:
        handle = session.send_async(MULTI_TOOL)
        handle.wait(timeout=30)
        transport.requests.clear()
        started = time.monotonic()
        assert list(handle.events()) == events.all(handle.run_id)  # twice, late: nothing missing
        assert list(handle.events(after=3)) == events.all(handle.run_id)[3:]
        assert transport.requests == [] and time.monotonic() - started < 2
    finally:
        session.close()


def test_given_another_tenants_session_when_subscribing_then_an_error_frame_and_no_watcher(stack, session):
    frame = intruder_answer(stack, "ws-session-intruder", {"session_id": session.session_id})
    assert frame["type"] == "error" and frame["status"] == 404, frame
    assert stack.runtime.store.get_session(LOCAL_TENANT, session.session_id).watching == []


def test_given_a_kept_connection_that_closes_mid_run_then_the_wait_goes_on_over_http(stack, workspace, events):
    from a3s_serverless import Agent

    # the connection API Gateway ends after its first pushed frame
    transport = Counting(stack.transport(), lambda: ClosingSocket(stack, frames=1, kind="events"))
    session = Agent(transport, local=True).session(str(workspace), permissive=True)
    try:
        handle = session.send_async(MULTI_TOOL)
        got = list(handle.events())
        assert got == events.all(handle.run_id) and got[-1]["type"] == "run_end"
        assert session.send("again").status == "succeeded"  # a new connection for the next wait
    finally:
        session.close()
