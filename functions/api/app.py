"""HTTP API: parse, call the core service, return. Errors take one JSON shape, never a trace."""
from __future__ import annotations

import json
from typing import Annotated, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError, ServiceError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestUnsupportedContentType, RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from a3s_core.bodies import BODY_METHODS, JSON_MEDIA_TYPE, check_body
from a3s_core.errors import A3SError
from a3s_core.runtime import get_runtime
from a3s_core.schemas import (AgentBody, ClaimBody, CompleteTaskBody, CreateSessionBody, LaneHandlerBody, SkillBody,
                              StartRunBody, StartWorkflowBody, ControlBody)
from a3s_core.service import Service, session_view
from a3s_core.schemas import ClaimTaskBody

MAX_BODY_BYTES = 256 * 1024  # leaves room under DynamoDB's 400 KB item limit
PUBLIC_PATHS = ("/health", "/openapi.json")
# Ids end up in DynamoDB keys (at most 1024 bytes for a sort key): longer ones are refused up front.
Id = Annotated[str, Path(max_length=200)]
MAX_SEQ = 10**9  # event sequence numbers and step counts: far beyond any run, within every key format

logger = Logger()
app = APIGatewayHttpResolver(enable_validation=True)


def _error(status: int, code: str, message: str, **extra: Any) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON,
                    body=json.dumps({"error": {"code": code, "message": message, **extra}}))


@app.exception_handler(A3SError)
def _domain_error(err: A3SError) -> Response:
    return _error(err.status, err.code, str(err))


@app.exception_handler(RequestValidationError)
def _invalid(err: RequestValidationError) -> Response:
    detail = json.loads(json.dumps(err.errors(), default=str))
    fields = "; ".join(f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg')}" for d in detail)
    return _error(422, "validation_error", f"invalid request: {fields}", detail=detail)


@app.exception_handler(json.JSONDecodeError)
def _bad_json(err: json.JSONDecodeError) -> Response:
    return _error(400, "bad_json", f"request body is not valid JSON: {err.msg} at position {err.pos}")


@app.exception_handler(RequestUnsupportedContentType)
def _unsupported(_: RequestUnsupportedContentType) -> Response:
    return _error(415, "unsupported_media_type", f"send the body as {JSON_MEDIA_TYPE}")


@app.exception_handler(ServiceError)
def _powertools_error(err: ServiceError) -> Response:
    return _error(err.status_code, "internal_error" if err.status_code >= 500 else "bad_request", err.msg)


@app.exception_handler(Exception)
def _unexpected(err: Exception) -> Response:
    # The kit's fault, in the kit's shape; the trace goes to the log, not to the caller.
    logger.exception("unhandled error")
    return _error(500, "internal_error", f"internal error (request {_request_id(app.current_event or {})})")


@app.not_found
def _not_found(_: NotFoundError) -> Response:
    return _error(404, "no_route", f"no route for {app.current_event.http_method} {app.current_event.path}")


def _request_id(event: Any) -> str:
    """The id API Gateway gave the request: in the log line of the failure and in the answer."""
    return str((event.get("requestContext") or {}).get("requestId") or "unknown")


def _tenant(event: dict) -> str | None:
    return (((event.get("requestContext") or {}).get("authorizer") or {}).get("lambda") or {}).get("tenant_id")


def _service() -> Service:
    return Service(get_runtime(), _tenant(app.current_event.raw_event) or "")


@app.get("/health")
def health() -> dict:
    return {"ok": True}


@app.get("/openapi.json")
def openapi() -> dict:
    return json.loads(app.get_openapi_json_schema(title="a3s-serverless", version="0.1.0"))


@app.post("/sessions")
def create_session(body: CreateSessionBody) -> tuple[dict, int]:
    return _service().create_session(body), 201


@app.get("/sessions/<session_id>")
def get_session(session_id: Id) -> dict:
    return session_view(_service().session(session_id))


@app.delete("/sessions/<session_id>")
def close_session(session_id: Id) -> dict:
    return _service().close_session(session_id)


@app.put("/sessions/<session_id>/lanes/<lane>")
def set_lane(session_id: Id, lane: Id, body: LaneHandlerBody) -> dict:
    return _service().set_lane(session_id, lane, body)


@app.put("/sessions/<session_id>/agents/<name>")
def register_agent(session_id: Id, name: Id, body: AgentBody) -> dict:
    return _service().register_agent(session_id, name, body)


@app.put("/sessions/<session_id>/skills/<name>")
def register_skill(session_id: str, name: str, body: SkillBody) -> dict:
    return _service().register_skill(session_id, name, body)


@app.get("/sessions/<session_id>/queue")
def queue(session_id: Id) -> dict:
    return _service().queue(session_id)


@app.get("/sessions/<session_id>/external-tasks")
def pending_tasks(session_id: Id) -> dict:
    return {"tasks": _service().pending_tasks(session_id)}


@app.post("/sessions/<session_id>/external-tasks/claim")
def claim_session_tasks(session_id: Id, body: ClaimBody,
                        lane: Annotated[str | None, Query(max_length=32)] = None) -> dict:
    return {"tasks": _service().claim(body, session_id=session_id, lane=lane)}


@app.post("/sessions/<session_id>/external-tasks/<task_id>/complete")
def complete_task(session_id: Id, task_id: Id, body: CompleteTaskBody) -> dict:
    return {"completed": _service().complete_task(session_id, task_id, body)}


@app.post("/sessions/<session_id>/external-tasks/<task_id>/claim")
def claim_task(session_id: str, task_id: str, body: ClaimTaskBody) -> dict:
    return _service().claim_task(session_id, task_id, body)


@app.post("/lanes/<lane>/claim")
def claim_lane_tasks(lane: Id, body: ClaimBody) -> dict:
    return {"tasks": _service().claim(body, lane=lane)}


@app.post("/sessions/<session_id>/runs")
def start_run(session_id: Id, body: StartRunBody) -> tuple[dict, int]:
    return _service().start_run(session_id, body), 202


@app.get("/runs/<run_id>")
def get_run(run_id: Id) -> dict:
    return _service().get_run(run_id)


@app.get("/runs/<run_id>/events")
def run_events(run_id: Id, after: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
               wait_ms: Annotated[int, Query(ge=0, le=20000)] = 0) -> dict:
    return _service().events(run_id, after, wait_ms)


@app.post("/sessions/<session_id>/workflows")
def start_workflow(session_id: Id, body: StartWorkflowBody) -> tuple[dict, int]:
    return _service().start_workflow(session_id, body), 202


@app.get("/workflows/<workflow_id>")
def get_workflow(workflow_id: Id, wait_ms: Annotated[int, Query(ge=0, le=20000)] = 0,
                 after_finished: Annotated[int, Query(ge=-1, le=MAX_SEQ)] = -1) -> dict:
    return _service().workflow(workflow_id, wait_ms, after_finished)


@app.post("/workflows/<workflow_id>/cancel")
def cancel_workflow(workflow_id: Id) -> dict:
    return _service().cancel_workflow(workflow_id)


@app.post("/runs/<run_id>/<action>")
def control_run(run_id: Id, action: Id, body: ControlBody | None = None) -> dict:
    return _service().control(run_id, action, body.prompt if body else None)


@app.get("/runs")
def list_runs(session_id: Annotated[str | None, Query(max_length=64)] = None) -> dict:
    return {"runs": _service().list_runs(session_id)}


def _raw_error(status: int, code: str, message: str) -> dict:
    """A response built before the resolver runs (it has no request to answer yet)."""
    return {"statusCode": status, "headers": {"Content-Type": "application/json"},
            "body": json.dumps({"error": {"code": code, "message": message}})}


def _json_body(event: dict) -> dict:
    """The event once its body is checked as JSON (A3SError if not), with the Content-Type spelled
    as the resolver expects it ("Application/JSON; charset=utf-8" is JSON too)."""
    headers = event.get("headers") or {}
    method = ((event.get("requestContext") or {}).get("http") or {}).get("method", "")
    check_body(method, headers.get("content-type"), event.get("body"), bool(event.get("isBase64Encoded")))
    if method.upper() in BODY_METHODS and headers.get("content-type"):
        return {**event, "headers": {**headers, "content-type": JSON_MEDIA_TYPE}}
    return event


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: Any) -> dict:
    try:
        body = event.get("body") or ""
        size = len(body) * 3 // 4 if event.get("isBase64Encoded") else len(body.encode())
        if size > MAX_BODY_BYTES:
            return _raw_error(413, "payload_too_large", f"request body exceeds {MAX_BODY_BYTES} bytes")
        # The authorizer vouches for the tenant; only the public routes may come without one.
        if not _tenant(event) and event.get("rawPath") not in PUBLIC_PATHS:
            return _raw_error(401, "unauthorized", "missing or unknown API key")
        try:
            event = _json_body(event)
        except A3SError as err:
            return _raw_error(err.status, err.code, str(err))
        return app.resolve(event, context)
    except Exception:  # past the resolver's own catch-all: still one shape, never a bare crash
        logger.exception("unhandled error")
        return _raw_error(500, "internal_error", f"internal error (request {_request_id(event)})")
