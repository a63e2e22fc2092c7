"""Events pushed over the WebSocket API, with short polling over HTTP where it is unavailable.

A client subscribes to a run (events after a seq), a workflow (step notices) or a lane (new tasks);
the service sends what was committed before the subscription (the catch-up), then pushes what is
committed after. Frames may overlap, never leave a gap: events are deduplicated by seq, and a hole
(or IDLE_S of silence) is filled by one GET. With no WebSocket URL, or a connection refused, every
wait falls back to polling the HTTP API as before.
"""
from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
import urllib.parse
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, Literal, Protocol

from .errors import error_for
from .transport import Transport

log = logging.getLogger("a3s_serverless.push")
EVENT_WAIT_MS = 15_000  # a long poll's wait (the polling path)
IDLE_S = 300.0          # this long without a frame: read once over HTTP (a push may be lost, a run
                        # failed by the runs DLQ or the sweeper ends without one)
# Until the first push arrives, quiet reads come sooner: the engine may hold the run from before the
# subscription (its watchers counter is read when it takes the run), so its pushes may start late.
FIRST_QUIET_S = 0.25
SAFETY_POLL_S = 60.0    # a lane drainer claims at least this often, pushed or not
STOP_CHECK_S = 0.5      # how soon a drainer waiting on its socket notices it is told to stop
OPEN_TIMEOUT_S = 5.0
RECONNECT_AFTER_S = 30.0  # a connection that lasted this long is opened again when it closes


class Socket(Protocol):
    def send(self, text: str) -> None: ...
    def recv(self, timeout: float) -> str:
        """The next frame; TimeoutError if none within `timeout` s, ConnectionError once closed."""
    def close(self) -> None: ...


class WebSocket:
    """A connection to the WebSocket API (websockets' synchronous client)."""

    def __init__(self, url: str, api_key: str | None) -> None:
        from websockets.sync.client import connect

        host = urllib.parse.urlsplit(url).hostname or ""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # loopback (`make dev`) never goes through a proxy; anything else as the environment says
        proxy: Literal[True] | None = None if host in ("127.0.0.1", "localhost", "::1") else True
        self._opened = connect(url, additional_headers=headers, open_timeout=OPEN_TIMEOUT_S, proxy=proxy,
                               compression=None)
        self._c = self._opened.__enter__()  # the connection is ours to close (close())

    def send(self, text: str) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            self._c.send(text)
        except ConnectionClosed as err:
            raise ConnectionError(str(err)) from err

    def recv(self, timeout: float) -> str:
        from websockets.exceptions import ConnectionClosed

        try:
            data = self._c.recv(timeout=max(0.0, timeout))
        except ConnectionClosed as err:
            raise ConnectionError(str(err)) from err
        return data if isinstance(data, str) else data.decode()

    def close(self) -> None:
        self._opened.__exit__(None, None, None)


def open_socket(transport: Transport) -> Socket | None:
    """A WebSocket connection for this transport, or None (no URL, refused): then poll."""
    opener = getattr(transport, "open_socket", None)
    if opener is None:
        return None
    try:
        return opener()
    except Exception as err:  # no URL, connection refused, a key the gateway refuses: poll instead
        log.debug("no WebSocket (%s): polling", err)
        return None


def _frame(sock: Socket, timeout: float) -> dict[str, Any]:
    frame = json.loads(sock.recv(timeout))
    if frame.get("type") == "error":
        raise error_for(int(frame.get("status") or 400),
                        {"error": {"code": frame.get("code"), "message": frame.get("message")}})
    return frame


def _left(deadline: float | None, cap: float) -> float:
    return cap if deadline is None else min(cap, deadline - time.monotonic())


def _page(t: Transport, run_id: str, after: int) -> dict[str, Any]:
    """One quick read of the run's events after `after` (no long-poll)."""
    return t.request("GET", f"/runs/{run_id}/events", query={"after": after, "wait_ms": 0})


def _gap_free(t: Transport, run_id: str, after: int, events: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Pushed `events` (in seq order) past `after`, each once, a hole before one (a push lost)
    filled from the API. The caller's `after` is the seq of the last event yielded."""
    for event in events:
        if event["seq"] <= after:
            continue  # had it (a catch-up and a push overlap)
        if event["seq"] > after + 1:
            for missing in _page(t, run_id, after)["events"]:
                if missing["seq"] < event["seq"]:
                    after = missing["seq"]
                    yield missing
        after = event["seq"]
        yield event


def poll_run(t: Transport, run_id: str, after: int, deadline: float | None = None) -> Iterator[dict[str, Any]]:
    """A run's events after `after` until it ends, long-polling the HTTP API."""
    while True:
        wait_ms = max(0, int(_left(deadline, EVENT_WAIT_MS / 1000) * 1000))
        page = t.request("GET", f"/runs/{run_id}/events", query={"after": after, "wait_ms": wait_ms})
        yield from page["events"]
        after = page["next"]
        if page["done"] and (not page["events"] or page["events"][-1]["type"] == "run_end"):
            return
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(f"run {run_id} still {page['status']}")


def follow_run(t: Transport, run_id: str, after: int = 0, deadline: float | None = None) -> Iterator[dict[str, Any]]:
    """Every event of the run after `after`, in order and once, until it ends: pushed if it can
    be, polled if not. TimeoutError at `deadline` (monotonic), if given."""
    while (sock := open_socket(t)) is not None:
        opened = time.monotonic()
        try:
            for event in _pushed(sock, t, run_id, after, deadline):
                after = event["seq"]
                yield event
                if event["type"] == "run_end":
                    return
            return
        except ConnectionError as err:  # closed (idle, or API Gateway's 2 h): connect again, from where it was
            log.debug("WebSocket closed (%s) at seq %d", err, after)
            if time.monotonic() - opened < RECONNECT_AFTER_S:
                break  # it closes as soon as it opens: poll instead
        finally:
            sock.close()
    yield from poll_run(t, run_id, after, deadline)


def _pushed(sock: Socket, t: Transport, run_id: str, after: int, deadline: float | None) -> Iterator[dict[str, Any]]:
    sock.send(json.dumps({"action": "subscribe", "run_id": run_id, "after": after}))
    quiet, subscribed, pushed = OPEN_TIMEOUT_S, False, False
    while True:
        left = _left(deadline, quiet)
        if left <= 0:
            raise TimeoutError(f"run {run_id} has not ended")
        try:
            frame = _frame(sock, left)
        except TimeoutError:  # quiet: read once over HTTP, in case a push was lost
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"run {run_id} has not ended") from None
            quiet = min(IDLE_S, quiet * 2)
            page = _page(t, run_id, after)
            for event in page["events"]:
                after = event["seq"]
                yield event
            if page["done"] and not page["events"]:
                return
            continue
        if frame.get("type") == "subscribed":
            subscribed = True
            if frame.get("done") and frame.get("next", 0) <= after:
                return  # it had ended, and the catch-up held all of it
            # A driver holding the run since before the subscription may not push until it takes
            # the run again: read sooner until a push comes. Otherwise the next taker pushes.
            quiet = FIRST_QUIET_S if frame.get("status") == "running" and not pushed else IDLE_S
        elif frame.get("type") == "events" and subscribed and not pushed:
            pushed, quiet = True, IDLE_S  # the catch-up comes before the ack: this one was pushed
        for event in _gap_free(t, run_id, after, frame.get("events", []) if frame.get("type") == "events" else []):
            after = event["seq"]
            yield event


class LaneWatch:
    """When a lane drainer should claim: a task pushed on its lanes, or SAFETY_POLL_S since its
    last claim (a lost push strands no task for longer). Without a WebSocket: its own backoff."""

    def __init__(self, transport: Transport, lanes: list[str], clock: Callable[[], float] = time.monotonic) -> None:
        self.transport, self.lanes, self.clock = transport, lanes, clock
        self.sock = self._open()

    def _open(self) -> Socket | None:
        sock = open_socket(self.transport)
        try:
            for lane in self.lanes if sock is not None else []:
                sock.send(json.dumps({"action": "subscribe", "lane": lane}))  # type: ignore[union-attr]
        except ConnectionError:
            return None
        return sock

    @property
    def pushed(self) -> bool:
        return self.sock is not None

    def wait(self, stop: threading.Event, poll_delay: float) -> list[dict[str, Any]] | None:
        """Until the next claim is due (or stop is set): the tasks pushed meanwhile (lease those,
        by id), or None (claim whatever is pending: the safety poll, a reconnection, no WebSocket)."""
        if self.sock is None:
            stop.wait(poll_delay)
            return None
        due = self.clock() + SAFETY_POLL_S
        while not stop.is_set():
            left = due - self.clock()
            if left <= 0:
                return None
            try:
                frame = _frame(self.sock, min(left, STOP_CHECK_S))
            except TimeoutError:
                continue
            except ConnectionError:  # closed (API Gateway ends connections after 2 h): open another
                self.sock.close()
                self.sock = self._open()
                return None  # and claim: what was pushed meanwhile is lost
            except Exception as err:  # an error frame (say, a lane refused): log it, keep waiting
                log.warning("lane subscription: %s", err)
                continue
            if frame.get("type") == "task":
                return [frame, *self._drain()]
            if frame.get("pending"):  # the catch-up's tasks came before it: they are here already
                self._drain()
                return None
        return None

    def _drain(self) -> list[dict[str, Any]]:
        """The task frames already here."""
        tasks: list[dict[str, Any]] = []
        while self.sock is not None:
            try:
                frame = json.loads(self.sock.recv(0))
            except (TimeoutError, ConnectionError, ValueError):
                return tasks
            if frame.get("type") == "task":
                tasks.append(frame)
        return tasks

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def claim_pushed(t: Transport, frame: dict[str, Any], worker: str, lease_ms: int) -> dict[str, Any] | None:
    """Lease a task a push told of, by id (one conditional write): the task, or None if another
    worker has it, it has finished, or the service refused."""
    try:
        out = t.request("POST", f"/sessions/{frame['session_id']}/external-tasks/{frame['task_id']}/claim",
                        {"worker": worker, "lease_ms": lease_ms})
    except Exception as err:  # a blip: the safety poll finds it
        log.debug("claiming pushed task %s: %s", frame.get("task_id"), err)
        return None
    return out["task"] if out.get("claimed") else None


# -- one connection per client, kept across its waits ---------------------------------------------
HUB_RETRY_S = 30.0   # after a WebSocket could not be opened, poll this long before trying again
LOGGED_RUNS = 64     # a kept connection remembers the pushed events of this many runs (the latest)


class Hub:
    """The one WebSocket connection a client keeps for its runs' events: it subscribes to a session
    once and the engine pushes every event of that session's runs on it, so a wait costs no
    subscription and no request. A reader thread keeps what is pushed per run (the latest
    LOGGED_RUNS runs), so a run followed late, or twice, misses nothing. When the connection
    closes (API Gateway ends them idle 10 minutes or open 2 hours), a follower reads what it
    missed over HTTP and the next wait opens another."""

    def __init__(self, sock: Socket) -> None:
        self.sock, self.opened, self.closed, self._stopping = sock, time.monotonic(), False, False
        self._changed = threading.Condition()
        self._subscribing = threading.Lock()
        self._sessions: set[str] = set()
        self._acks: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._logs: OrderedDict[str, dict[int, dict[str, Any]]] = OrderedDict()  # run -> seq -> event
        threading.Thread(target=self._read, daemon=True, name="a3s-push").start()

    def _read(self) -> None:
        while not self.closed and not self._stopping:
            try:
                frame = json.loads(self.sock.recv(STOP_CHECK_S))
            except TimeoutError:
                continue
            except (ConnectionError, ValueError, OSError) as err:  # closed, or not a frame of ours
                log.debug("push connection ended: %s", err)
                break
            if frame.get("type") == "events" and isinstance(frame.get("run_id"), str):
                with self._changed:
                    self._log(frame["run_id"]).update((e["seq"], e) for e in frame.get("events", []))
                    self._changed.notify_all()
            elif frame.get("type") in ("subscribed", "error"):
                self._acks.put(frame)
        self.close()

    def _log(self, run_id: str) -> dict[int, dict[str, Any]]:  # under self._changed
        events = self._logs.setdefault(run_id, {})
        self._logs.move_to_end(run_id)
        while len(self._logs) > LOGGED_RUNS:
            self._logs.popitem(last=False)
        return events

    def expect(self, run_id: str) -> None:
        """A run just started in a watched session: what is pushed of it is kept from now on."""
        with self._changed:
            self._log(run_id)

    def stop(self) -> None:
        """Close it from its own reader thread, soon (no I/O here: a finalizer may call this from
        whatever thread the garbage collector runs on)."""
        self._stopping = True

    def close(self) -> None:
        with self._changed:
            if self.closed:
                return
            self.closed = True
            self._changed.notify_all()
        self._acks.put(None)
        with contextlib.suppress(Exception):  # gone already (the service, or the process, is stopping)
            self.sock.close()

    def watch(self, session_id: str) -> bool:
        """Subscribed to the session's runs from now on; True if that happened just now (what came
        before is to be read). ConnectionError if the connection is gone; the service's error if refused."""
        with self._subscribing:
            if session_id in self._sessions:
                return False
            self.sock.send(json.dumps({"action": "subscribe", "session_id": session_id}))
            deadline = time.monotonic() + OPEN_TIMEOUT_S
            while True:
                try:
                    ack = self._acks.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    raise ConnectionError("no answer to a subscription") from None
                if ack is None:
                    raise ConnectionError("the connection closed")
                if ack.get("type") == "error" or ack.get("session_id") == session_id:
                    break  # (an ack of an earlier subscription that timed out is not ours)
            if ack.get("type") == "error":
                raise error_for(int(ack.get("status") or 400),
                                {"error": {"code": ack.get("code"), "message": ack.get("message")}})
            self._sessions.add(session_id)
            return True

    def _next(self, run_id: str, after: int, timeout: float) -> list[dict[str, Any]]:
        """Pushed events of the run after `after` (waiting up to `timeout` for some); ConnectionError
        once the connection has closed and nothing is left."""
        with self._changed:
            deadline = time.monotonic() + timeout
            while True:
                events = self._logs.get(run_id, {})
                found = sorted((e for seq, e in events.items() if seq > after), key=lambda e: e["seq"])
                if found:
                    return found
                if self.closed:
                    raise ConnectionError("the connection closed")
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                self._changed.wait(left)

    def follow(self, t: Transport, run_id: str, session_id: str, after: int, deadline: float | None,
               caught_up: bool) -> Iterator[dict[str, Any]]:
        """The run's events after `after` until it ends. `caught_up`: this connection watched the
        session before the run was made (and expected it), so every event of it is pushed here."""
        caught_up = not self.watch(session_id) and caught_up
        with self._changed:
            caught_up = caught_up and run_id in self._logs  # else forgotten: read it
        # Not caught up: read at once, then soon again until a push comes (a driver that held the
        # run before the subscription pushes from its next invocation on).
        quiet, pushed = (IDLE_S if caught_up else 0.0), False
        while True:
            left = _left(deadline, quiet)
            if left <= 0 < quiet:
                raise TimeoutError(f"run {run_id} has not ended")
            events = self._next(run_id, after, left) if left > 0 else []
            if not events:  # quiet: read once over HTTP, in case a push was lost
                page = _page(t, run_id, after)
                for event in page["events"]:
                    after = event["seq"]
                    yield event
                    if event["type"] == "run_end":
                        return
                if page["done"]:
                    return
                quiet = IDLE_S if pushed else min(IDLE_S, max(FIRST_QUIET_S, quiet * 2))
                continue
            pushed, quiet = True, IDLE_S
            for event in _gap_free(t, run_id, after, events):
                after = event["seq"]
                yield event
                if event["type"] == "run_end":
                    return


_hubs_lock = threading.Lock()


def hub(t: Transport) -> Hub | None:
    """The transport's kept connection, opened on first use (None: no WebSocket API; then poll)."""
    with _hubs_lock:
        current: Hub | None = getattr(t, "_a3s_hub", None)
        if current is not None and not current.closed:
            return current
        if getattr(t, "_a3s_no_hub_until", 0.0) > time.monotonic():
            return None
        sock = open_socket(t)
        if sock is None:
            t._a3s_no_hub_until = time.monotonic() + HUB_RETRY_S  # type: ignore[attr-defined]
            return None
        current = Hub(sock)
        t._a3s_hub = current  # type: ignore[attr-defined]
        with contextlib.suppress(TypeError):  # closed with its transport (a transport without weakrefs: at exit)
            weakref.finalize(t, current.stop)
        return current


def follow_session_run(t: Transport, run_id: str, session_id: str, after: int = 0, deadline: float | None = None,
                       since: Hub | None = None) -> Iterator[dict[str, Any]]:
    """Every event of a run of `session_id` after `after`, in order and once, until it ends: over
    the client's kept connection (Hub), or polled without one. `since`: the connection that
    watched the session before the run was made (the run's events will all be pushed on it)."""
    while (current := hub(t)) is not None:
        try:
            for event in current.follow(t, run_id, session_id, after, deadline, caught_up=current is since):
                after = event["seq"]
                yield event
            return
        except ConnectionError as err:
            log.debug("push connection lost (%s) at seq %d", err, after)
            current.close()
            if time.monotonic() - current.opened < RECONNECT_AFTER_S:  # it closes as soon as it opens
                t._a3s_no_hub_until = time.monotonic() + HUB_RETRY_S  # type: ignore[attr-defined]
    yield from poll_run(t, run_id, after, deadline)


def watch_session(t: Transport, session_id: str) -> Hub | None:
    """Subscribe the client's kept connection to the session before a run is started in it (so
    that all of the run's events are pushed); None if there is no connection (then poll)."""
    current = hub(t)
    if current is None:
        return None
    try:
        current.watch(session_id)
        return current  # the caller expects its run on it
    except ConnectionError:
        current.close()
        return None
