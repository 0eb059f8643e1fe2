"""The scan fast path: a shopper's scan answered without Flask's request pipeline.

Two requests are nearly all of the platform's traffic: ``GET /q/<code>`` (a phone opening
a label's QR URL) and ``GET /api/v1/resolve/<code>``. Around a view, Flask's pipeline --
request context, URL matching, session, hooks, response finalisation -- costs about as much
CPU as a bare Flask app's whole request (~150 µs on the project machine, measured in
bench/RESULTS.md "## Resolve"), a fifth of a scan. This WSGI middleware answers exactly
those two requests in an app context only, with the very functions their Flask routes call
(``trace.api.scans.resolve_api``, ``trace.web.consumer.phone_scan``), and hands everything
else to Flask untouched:

* only GET with no query string (the language switch ``?lang=`` and a scan token's replay
  ``?s=`` go to Flask) and a code without "/" (a whole QR URL sent to the resolve API goes
  to Flask, whose path converter takes it);
* any exception -- the rate limit's 429 too -- is answered by Flask's own error handling
  (``trace.api.problems``) in a request context of its own: one place maps errors to HTTP;
* an answer is the body and headers the route's response would have, written straight to
  the server (no response object): ``SCAN_HEADERS`` and, for the page, the ``Vary`` the
  app's ``after_request`` hook adds to every page (``i18n.VARY_BY_LANGUAGE``);
  tests/web/test_fastpath.py holds both paths' answers equal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from flask import Flask, Response
from werkzeug.http import parse_cookie
from werkzeug.wsgi import get_path_info

from trace.api.scans import JSON_TYPE, SCAN_HEADERS, resolve_api
from trace.web import i18n
from trace.web.consumer import HTML_TYPE, phone_scan

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

API_PREFIX = "/api/v1/resolve/"
PAGE_PREFIXES = ("/q/", "/Q/")

#: An answer's content type and its headers besides type and length: what the Flask
#: route's response and the app's after_request hooks give (test_fastpath compares them).
Kind = tuple[str, tuple[tuple[str, str], ...]]
_JSON: Kind = (JSON_TYPE, SCAN_HEADERS)
_HTML: Kind = (HTML_TYPE, (*SCAN_HEADERS, i18n.VARY_BY_LANGUAGE))

Handler = Callable[[str, "WSGIEnvironment"], tuple[bytes, Kind]]


def _api(code: str, environ: WSGIEnvironment) -> tuple[bytes, Kind]:
    body = resolve_api(code, environ.get("HTTP_USER_AGENT"), environ.get("REMOTE_ADDR"))
    return body.encode("utf-8"), _JSON


def _page(code: str, environ: WSGIEnvironment) -> tuple[bytes, Kind]:
    # What i18n.current_language reads from a Flask request (no ?lang= here).
    asked = parse_cookie(environ).get(i18n.COOKIE) if environ.get("HTTP_COOKIE") else None
    i18n.use_language(i18n.choose_language(asked, environ.get("HTTP_ACCEPT_LANGUAGE")))
    html = phone_scan(code, environ.get("HTTP_USER_AGENT"), environ.get("REMOTE_ADDR"))
    return html, _HTML


def route(environ: WSGIEnvironment) -> tuple[Handler, str] | None:
    """The fast path's handler and code for a request it answers, else None (Flask's)."""
    if environ.get("REQUEST_METHOD") != "GET" or environ.get("QUERY_STRING"):
        return None
    path = get_path_info(environ)  # decoded as Flask's routing decodes it
    if path.startswith(API_PREFIX):
        handler, code = _api, path[len(API_PREFIX) :]
    elif path[:3] in PAGE_PREFIXES:
        handler, code = _page, path[3:]
    else:
        return None
    if not code or "/" in code:  # what the routes' converters would not match alike
        return None
    return handler, code


class ScanFastPath:
    """WSGI middleware in front of ``app.wsgi_app`` (see the module doc)."""

    def __init__(self, app: Flask, flask_wsgi: WSGIApplication) -> None:
        self.app = app
        #: Flask's own pipeline: everything the fast path does not answer.
        self.flask_wsgi = flask_wsgi

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        routed = route(environ)
        if routed is None:
            return self.flask_wsgi(environ, start_response)
        handler, code = routed
        with self.app.app_context():
            try:
                body, (content_type, extra) = handler(code, environ)
            except Exception as exc:
                return self._error(environ, exc)(environ, start_response)
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body))), *extra]
        start_response("200 OK", headers)
        return [body]

    def _error(self, environ: WSGIEnvironment, exc: Exception) -> Response:
        """Flask's answer to ``exc`` raised by the view: its error handlers, then its
        after-request hooks, as if the route had raised it."""
        app: Any = self.app
        with app.request_context(environ):
            try:
                answer = app.handle_user_exception(exc)
            except Exception as unhandled:  # no handler: Flask's 500 (or re-raised in tests)
                return app.handle_exception(unhandled)
            return app.finalize_request(answer)
