"""The one mapping from errors to HTTP: RFC 9457 problem+json for the API, a page for the web."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, json, render_template, request
from werkzeug.exceptions import HTTPException

from trace import errors

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

STATUS_BY_ERROR: dict[type[errors.DomainError], int] = {
    errors.UpstreamUnavailable: 502,
    errors.ValidationFailed: 422,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.Forbidden: 403,
    errors.Unauthenticated: 401,
    errors.PayloadTooLarge: 413,
}


_KEPT_HEADERS = ("Allow", "Content-Range", "Retry-After", "WWW-Authenticate")


def _flatten(messages: Any, prefix: str = "") -> list[dict[str, str]]:
    """marshmallow/webargs messages {location: {field: [msg]}} -> [{field, message}]."""
    out: list[dict[str, str]] = []
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            out.extend(_flatten(value, name))
    elif isinstance(messages, list | tuple):
        if all(isinstance(m, str) for m in messages):
            out.extend({"field": prefix, "message": str(m)} for m in messages)
        else:
            for m in messages:
                out.extend(_flatten(m, prefix))
    else:
        out.append({"field": prefix, "message": str(messages)})
    return out


def _strip_location(items: list[dict[str, str]]) -> list[dict[str, str]]:
    locations = ("json.", "form.", "query.", "files.", "headers.", "view_args.")
    for item in items:
        for loc in locations:
            if item["field"].startswith(loc):
                item["field"] = item["field"][len(loc) :]
    return items


def problem(
    status: int,
    title: str,
    detail: str | None = None,
    invalid: list[dict[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if invalid:
        body["errors"] = invalid
    text = json.dumps(body, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate echoed from the input: escape it
        text = json.dumps(body, ensure_ascii=True)
    response = Response(text, status=status, mimetype=PROBLEM_JSON)
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _wants_page() -> bool:
    return not request.path.startswith("/api/")


def _page(status: int, title: str, detail: str | None) -> Response:
    html = render_template("error.html", status=status, title=title, detail=detail)
    return Response(html, status=status, mimetype="text/html")


def handle_domain_error(exc: errors.DomainError) -> Response:
    status = next((s for cls, s in STATUS_BY_ERROR.items() if isinstance(exc, cls)), 400)
    if _wants_page():
        return _page(status, exc.title, exc.detail)
    invalid = [{"field": f, "message": m} for f, msgs in exc.fields.items() for m in msgs]
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return problem(status, exc.title, exc.detail, invalid or None, headers)


def handle_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    title = exc.name
    detail = exc.description
    invalid: list[dict[str, str]] | None = None
    data = getattr(exc, "data", None) or {}
    if isinstance(data, Mapping) and "messages" in data:
        invalid = _strip_location(_flatten(data["messages"]))
        detail = "Some fields are invalid: " + ", ".join(sorted({i["field"] for i in invalid}))
    # Headers the status is meaningless without: Allow (405), Content-Range (416, so a
    # player learns the length), Retry-After (429/503), WWW-Authenticate (401).
    original = exc.get_response().headers
    kept = {k: original[k] for k in _KEPT_HEADERS if k in original}
    if _wants_page():
        page = _page(status, title, detail)
        page.headers.update(kept)
        return page
    return problem(status, title, detail, invalid, kept or None)


def handle_unexpected(exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.path)
    if _wants_page():
        return _page(500, "Internal error", None)
    return problem(500, "Internal Server Error", "An unexpected error occurred; it was logged.")


def handle_recursion(exc: RecursionError) -> Response:
    """JSON nested thousands deep exhausts the parser's stack: the client's fault, not ours."""
    if not request.content_length:
        return handle_unexpected(exc)
    if _wants_page():
        return _page(400, "Bad Request", None)
    return problem(400, "Bad Request", "The request body is nested too deeply to read.")


def register(app: Flask) -> None:
    app.register_error_handler(errors.DomainError, handle_domain_error)
    app.register_error_handler(RecursionError, handle_recursion)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)
