"""/openapi.json as the contract: every answer the tests get from the embedded stack is matched to
its operation in the document and validated against the response schema documented there.

The rules:
- A request is matched to the operation whose path template matches its path (a literal segment
  before a parameter, as OpenAPI says) and whose method is its method. Its status must be one the
  operation documents, and its body must validate against that status's schema.
- API Gateway's own refusals (401/403 `{"message"}`, no key or an unknown one) are documented on
  every authorized operation, so they are checked like any other answer.
- A request that matches no operation (an unknown path or method, an unknown run action) cannot be
  documented by OpenAPI: it must be refused with a 4xx in the kit's ErrorBody shape (or, for
  401/403/404, API Gateway's own `{"message"}`).
"""
from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

DOCUMENT_URI = "urn:a3s:openapi"
GATEWAY_STATUSES = (401, 403, 404)


def _pointer(*parts: str) -> str:
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


class Contract:
    """The document, with a validator for any schema in it (its $refs resolved within it)."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        resource = Resource.from_contents(document, default_specification=DRAFT202012)
        self._registry = Registry().with_resource(DOCUMENT_URI, resource)
        self._validators: dict[str, Draft202012Validator] = {}
        self._templates = []
        for template in document["paths"]:
            pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
            self._templates.append((template.count("{"), template, re.compile(f"^{pattern}$")))
        self._templates.sort()  # fewest parameters first: /runs/{run_id}/pause before any /runs/{a}/{b}

    def operations(self) -> list[tuple[str, str]]:
        return [(method.upper(), path) for path, ops in self.document["paths"].items() for method in ops]

    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any]] | None:
        for _, template, regex in self._templates:
            if regex.match(path) and method.lower() in self.document["paths"][template]:
                return template, self.document["paths"][template][method.lower()]
        return None

    def errors(self, pointer: str, value: Any) -> list[str]:
        validator = self._validators.get(pointer)
        if validator is None:
            validator = Draft202012Validator({"$ref": DOCUMENT_URI + pointer}, registry=self._registry)
            self._validators[pointer] = validator
        return [f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message[:300]}"
                for e in validator.iter_errors(value)]

    def problems(self, method: str, path: str, status: int, text: str) -> tuple[str | None, list[str]]:
        """(the operation's `METHOD template`, or None; what is wrong with the answer)."""
        try:
            body = json.loads(text) if text else None
        except ValueError:
            return None, [f"body is not JSON: {text[:200]!r}"]
        found = self.operation(method, path)
        if found is None:
            if not 400 <= status < 500:
                return None, [f"{status} for a request that matches no operation (expected a 4xx)"]
            errors = self.errors(_pointer("components", "schemas", "ErrorBody"), body)
            if errors and status in GATEWAY_STATUSES:
                gateway = self.errors(_pointer("components", "schemas", "GatewayError"), body)
                errors = errors if gateway else []
            return None, errors
        template, op = found
        name = f"{method.upper()} {template}"
        if str(status) not in op["responses"]:
            return name, [f"status {status} is not documented (documented: {', '.join(op['responses'])})"]
        content = op["responses"][str(status)].get("content") or {}
        if "application/json" not in content:
            return name, [] if body is None else ["a body where the document has none"]
        pointer = _pointer("paths", template, method.lower(), "responses", str(status), "content",
                           "application/json", "schema")
        return name, self.errors(pointer, body)


class Recorder:
    """Wraps a stack's invoke_http: checks each answer, counts them, keeps the mismatches."""

    def __init__(self) -> None:
        self.contract: Contract | None = None
        self.checked = 0
        self.by_operation: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()
        self.mismatches: list[str] = []
        self.reported = 0
        self._lock = threading.Lock()

    def watch(self, stack: Any) -> None:
        invoke: Callable[..., tuple[int, str]] = stack.invoke_http

        def checked(method: str, path: str, body: str | None = None, query: dict | None = None,
                    headers: dict[str, str] | None = None) -> tuple[int, str]:
            status, text = invoke(method, path, body, query, headers)
            self.check(method, path, status, text, lambda: invoke("GET", "/openapi.json"))
            return status, text

        stack.invoke_http = checked

    def check(self, method: str, path: str, status: int, text: str,
              fetch: Callable[[], tuple[int, str]]) -> None:
        with self._lock:
            if self.contract is None:
                doc_status, doc = fetch()
                assert doc_status == 200, doc
                self.contract = Contract(json.loads(doc))
        operation, problems = self.contract.problems(method, path, status, text)
        with self._lock:
            self.checked += 1
            self.by_status[status] += 1
            self.by_operation[operation or "(no operation)"] += 1
            self.mismatches.extend(f"{method} {path[:120]} -> {status}: {p}" for p in problems)

    def new_mismatches(self) -> list[str]:
        with self._lock:
            new, self.reported = self.mismatches[self.reported:], len(self.mismatches)
        return new

    def summary(self) -> list[str]:
        if not self.checked or self.contract is None:
            return []
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(self.by_status.items()))
        unseen = [f"{m} {p}" for m, p in self.contract.operations() if f"{m} {p}" not in self.by_operation]
        lines = [f"{self.checked} responses checked against /openapi.json ({statuses}); "
                 f"{len(self.mismatches)} mismatches"]
        if unseen:
            lines.append(f"operations no test called: {', '.join(unseen)}")
        return lines
