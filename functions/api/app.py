"""HTTP API: parse, call the core service, return. Errors take one JSON shape, never a trace."""
from __future__ import annotations

# ruff: noqa: E402 - the collector is off through this module's imports (on again at its end)
import gc

# The imports below make ~50k objects, all of them kept, and the collector would walk them all at
# least once on the way (~50 ms of the cold start, collecting nothing): off until they are made,
# then frozen, so that later full collections leave them out.
gc.disable()

import functools
import json
from collections.abc import Callable
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError, ServiceError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestUnsupportedContentType, RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from a3s_core import telemetry
from a3s_core.api import console_files
from a3s_core.api.bodies import BODY_METHODS, JSON_MEDIA_TYPE, check_body
from a3s_core.api.schemas import (
    AgentBody,
    ClaimBody,
    ClaimTaskBody,
    CompleteTaskBody,
    CreateSessionBody,
    InjectBody,
    LaneHandlerBody,
    SkillBody,
    StartRunBody,
    StartWorkflowBody,
)
from a3s_core.api.service import Service, session_view
from a3s_core.domain.errors import A3SError
from a3s_core.runtime import get_runtime

MAX_BODY_BYTES = 256 * 1024  # leaves room under DynamoDB's 400 KB item limit
PUBLIC_PATHS = ("/health", "/openapi.json", "/console")
CONSOLE_PREFIX = "/console/"  # the console's assets: public too (the page asks for the key itself)
# Ids end up in DynamoDB keys (at most 1024 bytes for a sort key): longer ones are refused up front.
Id = Annotated[str, Path(max_length=200)]
MAX_SEQ = 10**9  # event sequence numbers and step counts: far beyond any run, within every key format

# Ids in a path, for the log lines of its request: /sessions/{id}/..., /runs/{id}/... and so on.
PATH_IDS = {"sessions": "session_id", "runs": "run_id", "workflows": "workflow_id", "external-tasks": "task_id"}

logger = Logger()
tracer = Tracer(patch_modules=telemetry.TRACED_MODULES)
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
    message = err.msg if isinstance(err.msg, str) else json.dumps(err.msg, default=str)  # it may carry a dict
    return _error(err.status_code, "internal_error" if err.status_code >= 500 else "bad_request", message)


@app.exception_handler(Exception)
def _unexpected(err: Exception) -> Response:
    # The kit's fault, in the kit's shape; the trace goes to the log, not to the caller.
    telemetry.internal_error("api")
    return _error(500, "internal_error", f"internal error (request {_request_id(app.current_event or {})})")


@app.not_found
def _not_found(_: NotFoundError) -> Response:
    return _error(404, "no_route", f"no route for {app.current_event.http_method} {app.current_event.path}")


def _request_id(event: Any) -> str:
    """The id API Gateway gave the request: in the log line of the failure and in the answer."""
    return str((event.get("requestContext") or {}).get("requestId") or "unknown")


def _public(path: str) -> bool:
    """A route that needs no key: the public paths, and one segment under /console/."""
    name = path.removeprefix(CONSOLE_PREFIX)
    return path in PUBLIC_PATHS or (name != path and "/" not in name)


def _tenant(event: dict) -> str | None:
    return (((event.get("requestContext") or {}).get("authorizer") or {}).get("lambda") or {}).get("tenant_id")


def _service() -> Service:
    return Service(get_runtime(), _tenant(app.current_event.raw_event) or "")


# -- the document --------------------------------------------------------------------------------
# The routes document themselves through `responses=` rather than through return annotations: a
# pydantic return type would have Powertools validate and re-serialize every answer at run time,
# and turn a mismatch into a 422 (the caller's fault) where it is the kit's. The e2e suite checks
# the real answers against the document instead (tests/openapi_contract.py).
#
# The document is made by a resolver of its own, on the first GET /openapi.json: the one that serves
# requests registers the same handlers without it, so a cold start neither imports the response models
# (api/views.py) nor has Powertools analyse them when it first resolves a route.
BEARER = "bearerAuth"
ROUTES: list[tuple[str, str, str | Any, frozenset[int], int, bool, Callable]] = []  # what _document registers


def _json(model: Any) -> dict[str, Any]:
    return {"application/json": {"model": model}}


def _errors(views: Any) -> dict[int, OpenAPIResponse]:
    ErrorBody, GatewayError = views.ErrorBody, views.GatewayError  # noqa: N806 - the models' own names
    return {
        400: {"description": "Malformed JSON (bad_json) or a request the kit refuses (bad_request, model_not_allowed)",
              "content": _json(ErrorBody)},
        # API Gateway refuses a request without a key before the function runs, in its own shape; the
        # function answers in the kit's if it is ever reached without the authorizer's tenant.
        401: {"description": "No API key: API Gateway's {message}, or the kit's unauthorized",
              "content": _json(GatewayError | ErrorBody)},
        403: {"description": "Unknown API key: API Gateway's own answer", "content": _json(GatewayError)},
        404: {"description": "Unknown id (not_found)", "content": _json(ErrorBody)},
        409: {"description": "The state does not allow it (conflict): the run has ended, or the item kept changing",
              "content": _json(ErrorBody)},
        413: {"description": f"Body over {MAX_BODY_BYTES} bytes (payload_too_large), or a write that would make a "
                             "stored item outgrow DynamoDB's 400 KB (item_too_large); nothing is changed",
              "content": _json(ErrorBody)},
        415: {"description": f"Content-Type other than {JSON_MEDIA_TYPE} (unsupported_media_type)",
              "content": _json(ErrorBody)},
        422: {"description": "A parameter or body field fails validation (validation_error; `detail` lists each)",
              "content": _json(ErrorBody)},
        500: {"description": "The kit's own failure (internal_error), with the request id; the trace is logged only",
              "content": _json(ErrorBody)},
    }
AUTHORIZED_ERRORS = (401, 403, 422, 500)
BODY_ERRORS = (400, 413, 415)  # every POST and PUT: the body is checked before any route runs


def _route(method: str, rule: str, model: str | Any, *errors: int, status: int = 200, public: bool = False) -> Callable:
    """Register the handler for `method rule`, and for the document: the success `status` (which is
    also what the handler's dict is sent with), its body `model` (a name in api/views.py, or a
    type), and the errors it can answer (`errors` plus those of every authorized route and of every
    route with a body)."""
    codes = {500, *errors, *(() if public else AUTHORIZED_ERRORS), *(BODY_ERRORS if method in BODY_METHODS else ())}

    def register(handler: Callable) -> Callable:
        ROUTES.append((method, rule, model, frozenset(codes), status, public, handler))
        return app.route(rule, method, operation_id=handler.__name__, status_code=status)(handler)

    return register


@functools.cache
def _document() -> dict[str, Any]:
    from a3s_core.api import views  # the response models: for this document only

    documented = APIGatewayHttpResolver(enable_validation=True)
    documented.configure_openapi(
        title="a3s-serverless", version="0.1.0",
        description="Agent sessions, runs, external tasks and workflows on AWS Lambda, SQS and DynamoDB.",
        # HTTPBearer's fields as a plain dict: the document is validated when it is made, and importing
        # Powertools' OpenAPI models (their schemas built at import) costs ~0.2 s.
        security_schemes={BEARER: {"type": "http", "scheme": "bearer",  # type: ignore[dict-item]
                                   "description": "Authorization: Bearer <API key>; the key names the tenant"}})
    errors = _errors(views)
    for method, rule, model, codes, status, public, handler in ROUTES:
        body = getattr(views, model) if isinstance(model, str) else model
        responses: dict[int, OpenAPIResponse] = {
            status: {"description": HTTPStatus(status).phrase, "content": _json(body)},
            **{code: errors[code] for code in sorted(codes)}}
        documented.route(rule, method, operation_id=handler.__name__, description=handler.__doc__,
                         status_code=status, responses=responses,
                         security=None if public else [{BEARER: []}])(handler)
    doc = json.loads(documented.get_openapi_json_schema())
    # Powertools documents a 422 of its own shape on every route. The kit's routes replace it with
    # ErrorBody (what _invalid sends); the public ones take no input and cannot answer 422 at all.
    for operation in (op for path in doc["paths"].values() for op in path.values()):
        if "HTTPValidationError" in json.dumps(operation["responses"].get("422", {})):
            del operation["responses"]["422"]
        operation["responses"] = dict(sorted(operation["responses"].items()))
    for name in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        doc["components"]["schemas"].pop(name, None)
    doc["paths"] = dict(sorted(doc["paths"].items()))
    return doc


# -- routes --------------------------------------------------------------------------------------
@_route("GET", "/health", "Health", public=True)
def health() -> dict:
    """Up, and where to connect for pushed events (null: no WebSocket API; poll GET /runs/{id}/events)."""
    return {"ok": True, "websocket_url": get_runtime().settings.ws_url or None}


@_route("GET", "/openapi.json", dict[str, Any], public=True)
def openapi() -> dict:
    """This document."""
    return _document()


# The web console: a page and its assets, not part of the API (so not in its document). Like
# /health, they need no key; the page asks for one and sends it with each API call it makes.
def _console_file(name: str, found: console_files.ConsoleFile | None) -> Response:
    if found is None:
        return _error(404, "not_found", f"the console has no file {name[:100]!r}")
    if found.etag in (app.current_event.headers or {}).get("if-none-match", ""):
        return Response(status_code=304, headers=found.headers)
    return Response(status_code=200, content_type=found.headers["Content-Type"], body=found.text,
                    headers=found.headers)


@app.get("/console", include_in_schema=False)
def console_page():  # no return annotation: Powertools would make a schema of it
    return _console_file(console_files.PAGE, console_files.page())


@app.get("/console/<name>", include_in_schema=False)
def console_asset(name: Id):
    return _console_file(name, console_files.asset(name))


@_route("POST", "/sessions", "SessionView", 409, status=201)
def create_session(body: CreateSessionBody) -> dict:
    return _service().create_session(body)


@_route("GET", "/sessions", "SessionsView")
def list_sessions(limit: Annotated[int, Query(ge=1, le=200)] = 50) -> dict:
    return {"sessions": _service().list_sessions(limit)}


@_route("GET", "/sessions/<session_id>", "SessionView", 404)
def get_session(session_id: Id) -> dict:
    return session_view(_service().session(session_id))


@_route("DELETE", "/sessions/<session_id>", "SessionView", 404, 409)
def close_session(session_id: Id) -> dict:
    return _service().close_session(session_id)


@_route("PUT", "/sessions/<session_id>/lanes/<lane>", "SessionView", 404, 409)
def set_lane(session_id: Id, lane: Id, body: LaneHandlerBody) -> dict:
    return _service().set_lane(session_id, lane, body)


@_route("PUT", "/sessions/<session_id>/agents/<name>", "AgentsView", 404, 409)
def register_agent(session_id: Id, name: Id, body: AgentBody) -> dict:
    return _service().register_agent(session_id, name, body)


@_route("PUT", "/sessions/<session_id>/skills/<name>", "SkillsView", 404, 409)
def register_skill(session_id: Id, name: Id, body: SkillBody) -> dict:
    return _service().register_skill(session_id, name, body)


@_route("GET", "/sessions/<session_id>/queue", "QueueView", 404)
def get_queue(session_id: Id) -> dict:
    return _service().queue(session_id)


@_route("GET", "/sessions/<session_id>/external-tasks", "TasksView", 404)
def list_pending_tasks(session_id: Id) -> dict:
    return {"tasks": _service().pending_tasks(session_id)}


@_route("POST", "/sessions/<session_id>/external-tasks/claim", "TasksView", 404)
def claim_session_tasks(session_id: Id, body: ClaimBody,
                        lane: Annotated[str | None, Query(max_length=32)] = None) -> dict:
    return {"tasks": _service().claim(body, session_id=session_id, lane=lane)}


@_route("POST", "/sessions/<session_id>/external-tasks/<task_id>/complete", "CompletedView", 404)
def complete_task(session_id: Id, task_id: Id, body: CompleteTaskBody) -> dict:
    return {"completed": _service().complete_task(session_id, task_id, body)}


@_route("POST", "/sessions/<session_id>/external-tasks/<task_id>/claim", "ClaimView", 404)
def claim_task(session_id: Id, task_id: Id, body: ClaimTaskBody) -> dict:
    return _service().claim_task(session_id, task_id, body)


@_route("POST", "/lanes/<lane>/claim", "TasksView")
def claim_lane_tasks(lane: Id, body: ClaimBody) -> dict:
    return {"tasks": _service().claim(body, lane=lane)}


@_route("POST", "/sessions/<session_id>/runs", "RunView", 404, status=202)
def start_run(session_id: Id, body: StartRunBody) -> dict:
    return _service().start_run(session_id, body)


@_route("GET", "/runs/<run_id>", "RunView", 404)
def get_run(run_id: Id) -> dict:
    return _service().get_run(run_id)


@_route("GET", "/runs/<run_id>/events", "EventsView", 404)
def list_run_events(run_id: Id, after: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
                    wait_ms: Annotated[int, Query(ge=0, le=20000)] = 0) -> dict:
    return _service().events(run_id, after, wait_ms)


@_route("POST", "/runs/<run_id>/pause", "ControlView", 404, 409)
def pause_run(run_id: Id) -> dict:
    """Pause at the next turn boundary; a run waiting on tasks is paused at once."""
    return _service().control(run_id, "pause", None)


@_route("POST", "/runs/<run_id>/resume", "ControlView", 404, 409)
def resume_run(run_id: Id) -> dict:
    """Resume a paused run from its checkpoint (400 if it is not paused)."""
    return _service().control(run_id, "resume", None)


@_route("POST", "/runs/<run_id>/cancel", "ControlView", 404, 409)
def cancel_run(run_id: Id) -> dict:
    """Cancel the run, its child runs and its pending external tasks."""
    return _service().control(run_id, "cancel", None)


@_route("POST", "/runs/<run_id>/inject", "ControlView", 404, 409)
def inject_prompt(run_id: Id, body: InjectBody) -> dict:
    """Add a user message the model sees on its next turn."""
    return _service().control(run_id, "inject", body.prompt)


@app.post("/runs/<run_id>/<action>", include_in_schema=False)
def unknown_run_action(run_id: Id, action: Id) -> dict:
    # Registered after the four actions, so only an unknown one gets here: control refuses it (400)
    # with the list of actions, whatever the run, as it did when the action was a path parameter.
    return _service().control(run_id, action, None)


@_route("GET", "/runs", "RunsView")
def list_runs(session_id: Annotated[str | None, Query(max_length=64)] = None) -> dict:
    return {"runs": _service().list_runs(session_id)}


@_route("POST", "/sessions/<session_id>/workflows", "WorkflowStarted", 404, status=202)
def start_workflow(session_id: Id, body: StartWorkflowBody) -> dict:
    return _service().start_workflow(session_id, body)


@_route("GET", "/workflows/<workflow_id>", "WorkflowView", 404)
def get_workflow(workflow_id: Id, wait_ms: Annotated[int, Query(ge=0, le=20000)] = 0,
                 after_finished: Annotated[int, Query(ge=-1, le=MAX_SEQ)] = -1) -> dict:
    return _service().workflow(workflow_id, wait_ms, after_finished)


@_route("GET", "/workflows", "WorkflowsView")
def list_workflows(session_id: Annotated[str | None, Query(max_length=64)] = None,
                   limit: Annotated[int, Query(ge=1, le=200)] = 50) -> dict:
    return {"workflows": _service().list_workflows(session_id, limit)}


@_route("GET", "/workflows/<workflow_id>/steps", "StepsView", 404)
def workflow_steps(workflow_id: Id) -> dict:
    return _service().workflow_steps(workflow_id)


@_route("POST", "/workflows/<workflow_id>/cancel", "WorkflowCancelled", 404)
def cancel_workflow(workflow_id: Id) -> dict:
    return _service().cancel_workflow(workflow_id)


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


def _path_ids(path: str) -> dict[str, str]:
    parts = path.strip("/").split("/")
    return {PATH_IDS[a]: b for a, b in zip(parts, parts[1:], strict=False) if a in PATH_IDS and b != "claim"}


gc.freeze()
gc.enable()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@telemetry.instrumented
def handler(event: dict, context: LambdaContext) -> dict:
    telemetry.correlate(tenant=_tenant(event), **_path_ids(str(event.get("rawPath") or "")))
    try:
        body = event.get("body") or ""
        size = len(body) * 3 // 4 if event.get("isBase64Encoded") else len(body.encode())
        if size > MAX_BODY_BYTES:
            return _raw_error(413, "payload_too_large", f"request body exceeds {MAX_BODY_BYTES} bytes")
        # The authorizer vouches for the tenant; only the public routes may come without one.
        if not _tenant(event) and not _public(str(event.get("rawPath") or "")):
            return _raw_error(401, "unauthorized", "missing or unknown API key")
        try:
            event = _json_body(event)
        except A3SError as err:
            return _raw_error(err.status, err.code, str(err))
        return app.resolve(event, context)
    except Exception:  # past the resolver's own catch-all: still one shape, never a bare crash
        telemetry.internal_error("api")
        return _raw_error(500, "internal_error", f"internal error (request {_request_id(event)})")
