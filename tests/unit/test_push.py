"""engine/push.py and the SDK's push client, without a stack: frames, the counter gate, gone
connections, and a client that drops repeats and fills holes."""
from __future__ import annotations

import json
import queue
import threading
from typing import Any

import pytest

from a3s_core.domain.items import Event, Run
from a3s_core.engine import push
from a3s_core.store.memory import MemoryStore
from a3s_serverless import push as client


class Poster:
    def __init__(self, gone: tuple[str, ...] = ()) -> None:
        self.sent: list[tuple[str, dict]] = []
        self.gone = gone

    def post(self, connection_id: str, data: bytes) -> None:
        if connection_id in self.gone:
            raise push.Gone(connection_id)
        self.sent.append((connection_id, json.loads(data)))


class Rt:
    def __init__(self, store: Any, poster: Any) -> None:
        self.store, self.connections = store, poster

    def poster(self) -> Any:
        return self.connections


def a_run(store: MemoryStore) -> Run:
    run = Run(tenant="t", run_id="r", session_id="s", prompt="p", model="scripted", workspace="/w")
    store.create_run(run)
    return run


def test_given_many_large_events_then_frames_stay_under_the_frame_limit_and_keep_every_event_in_order():
    events = [Event(seq=i, type="tool_end", data={"output": "x" * 2000}) for i in range(1, 201)]
    frames = push.frames("r", events)
    assert len(frames) > 1
    assert all(len(json.dumps(f).encode()) < 128 * 1024 for f in frames)
    assert [e["seq"] for f in frames for e in f["events"]] == list(range(1, 201))


def test_given_a_run_nobody_watches_then_publishing_looks_nothing_up(monkeypatch):
    store = MemoryStore()
    run = a_run(store)
    monkeypatch.setattr(store, "watchers", lambda *a: pytest.fail("looked watchers up"))
    push.publish_run(Rt(store, Poster()), run, [Event(seq=1, type="run_start")])  # type: ignore[arg-type]


def test_given_watchers_then_each_gets_the_events_and_a_gone_one_loses_its_watcher():
    store, poster = MemoryStore(), Poster(gone=("old",))
    run = a_run(store)
    store.add_watcher("t", "run", "r", "live", 2_000_000_000)
    store.add_watcher("t", "run", "r", "old", 2_000_000_000)
    run = store.get_run("t", "r")

    push.publish_run(Rt(store, poster), run, [Event(seq=1, type="run_start")])  # type: ignore[arg-type]

    assert poster.sent == [("live", {"type": "events", "run_id": "r", "events": [
        {"seq": 1, "type": "run_start", "ts": poster.sent[0][1]["events"][0]["ts"]}]})]
    assert store.watchers("t", "run", "r") == ["live"]
    assert store.get_run("t", "r").watchers == 1


def test_given_a_post_that_fails_then_publishing_does_not_raise():
    class Broken:
        def post(self, connection_id: str, data: bytes) -> None:
            raise OSError("network down")

    store = MemoryStore()
    a_run(store)
    store.add_watcher("t", "run", "r", "c", 2_000_000_000)
    push.publish_run(Rt(store, Broken()), store.get_run("t", "r"), [Event(seq=1, type="x")])  # type: ignore[arg-type]
    assert store.watchers("t", "run", "r") == ["c"]


def test_given_api_gateway_says_gone_then_the_poster_raises_gone_and_other_errors_pass_through():
    from botocore.exceptions import ClientError

    class Client:
        def __init__(self, code: str) -> None:
            self.code, self.calls = code, []

        def post_to_connection(self, **kw: Any) -> None:
            self.calls.append(kw)
            raise ClientError({"Error": {"Code": self.code, "Message": "m"}}, "PostToConnection")

    gone = Client("GoneException")
    with pytest.raises(push.Gone):
        push.ApiGatewayPoster(gone).post("c1", b"{}")
    assert gone.calls == [{"ConnectionId": "c1", "Data": b"{}"}]
    with pytest.raises(ClientError, match="LimitExceededException"):
        push.ApiGatewayPoster(Client("LimitExceededException")).post("c1", b"{}")


def test_given_a_gone_connection_whose_watcher_cannot_be_removed_then_publishing_still_does_not_raise(monkeypatch):
    store = MemoryStore()
    a_run(store)
    store.add_watcher("t", "run", "r", "old", 2_000_000_000)

    def broken(*a: Any) -> None:
        raise OSError("table unavailable")

    monkeypatch.setattr(store, "remove_watcher", broken)
    push.publish_run(Rt(store, Poster(gone=("old",))), store.get_run("t", "r"),  # type: ignore[arg-type]
                     [Event(seq=1, type="x")])


def test_given_watchers_that_cannot_be_read_then_publishing_gives_up_quietly(monkeypatch):
    store, poster = MemoryStore(), Poster()
    a_run(store)
    store.add_watcher("t", "run", "r", "c", 2_000_000_000)
    monkeypatch.setattr(store, "watchers", lambda *a: (_ for _ in ()).throw(OSError("table unavailable")))
    push.publish_run(Rt(store, poster), store.get_run("t", "r"), [Event(seq=1, type="x")])  # type: ignore[arg-type]
    assert poster.sent == []


def test_given_a_workflow_nobody_watches_then_a_step_notice_looks_nothing_up(monkeypatch):
    store = MemoryStore()
    monkeypatch.setattr(store, "watchers", lambda *a: pytest.fail("looked watchers up"))
    push.publish_workflow(Rt(store, Poster()), "t", "wf", {"step": "000000"}, watched=False)  # type: ignore[arg-type]


# -- the SDK's side --------------------------------------------------------------------------------
def ev(seq: int, type_: str = "text") -> dict:
    return {"seq": seq, "type": type_, "ts": 0}


class Script:
    """A socket that answers the subscribe with the frames given."""

    def __init__(self, frames: list[dict]) -> None:
        self.frames: queue.Queue[str] = queue.Queue()
        self._script = frames
        self.sent: list[dict] = []

    def send(self, text: str) -> None:
        self.sent.append(json.loads(text))
        for frame in self._script:
            self.frames.put(json.dumps(frame))

    def recv(self, timeout: float) -> str:
        try:
            return self.frames.get(timeout=min(timeout, 0.2))
        except queue.Empty:
            raise TimeoutError from None

    def close(self) -> None:
        pass


class Api:
    """GET /runs/{id}/events over a fixed list of events."""

    def __init__(self, events: list[dict], socket: Any = None) -> None:
        self.events, self.socket, self.requests = events, socket, []

    def request(self, method: str, path: str, body: Any = None, query: dict | None = None) -> Any:
        self.requests.append(query)
        after = (query or {}).get("after", 0)
        page = [e for e in self.events if e["seq"] > after]
        return {"events": page, "next": page[-1]["seq"] if page else after, "done": True, "status": "succeeded"}

    def open_socket(self) -> Any:
        if self.socket is None:
            raise ConnectionRefusedError("no")
        return self.socket


def test_given_overlapping_frames_and_a_hole_then_the_client_yields_each_event_once_in_order():
    everything = [ev(1), ev(2), ev(3), ev(4), ev(5, "run_end")]
    sock = Script([{"type": "events", "events": [ev(1), ev(2)]},
                   {"type": "subscribed", "status": "running", "done": False, "next": 2},
                   {"type": "events", "events": [ev(2), ev(4)]},  # a repeat, then a hole (3)
                   {"type": "events", "events": [ev(5, "run_end")]}])
    api = Api(everything, sock)

    assert list(client.follow_run(api, "r")) == everything
    assert sock.sent == [{"action": "subscribe", "run_id": "r", "after": 0}]
    assert api.requests == [{"after": 2, "wait_ms": 0}]  # one read, for the hole


def test_given_a_run_that_had_ended_then_the_ack_ends_the_follow():
    sock = Script([{"type": "events", "events": [ev(3), ev(4, "run_end")]},
                   {"type": "subscribed", "status": "succeeded", "done": True, "next": 4}])
    assert [e["seq"] for e in client.follow_run(Api([], sock), "r", after=2)] == [3, 4]


def test_given_an_error_frame_then_the_client_raises_the_sdks_error():
    from a3s_serverless.errors import NotFoundError

    sock = Script([{"type": "error", "status": 404, "code": "not_found", "message": "run 'r' not found"}])
    with pytest.raises(NotFoundError):
        list(client.follow_run(Api([], sock), "r"))


def test_given_no_websocket_then_the_client_polls():
    api = Api([ev(1), ev(2, "run_end")])
    assert [e["seq"] for e in client.follow_run(api, "r")] == [1, 2]
    assert api.requests[0]["wait_ms"] > 0  # long-polled, as before


def test_given_a_lane_watch_when_a_task_frame_comes_then_it_returns_at_once_and_drains_the_rest():
    sock = Script([{"type": "subscribed", "lane": "execute", "pending": 0}, {"type": "task", "task_id": "a"},
                   {"type": "task", "task_id": "b"}])
    watch = client.LaneWatch(Api([], sock), ["execute"])
    watch.wait(threading.Event(), 0.05)
    assert sock.frames.empty()  # one claim answers both
    assert sock.sent == [{"action": "subscribe", "lane": "execute"}]
