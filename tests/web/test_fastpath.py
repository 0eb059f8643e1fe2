"""The scan fast path (trace/web/fastpath.py): it answers GET /q/<code> and GET
/api/v1/resolve/<code> without Flask's request pipeline, exactly as the Flask routes would,
and leaves every other request to Flask."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import Client, TestResponse

from tests.web.conftest import PHONE_UA, World
from trace.app import close_app, create_app
from trace.config import Config
from trace.services import resolve as resolver
from trace.web.fastpath import ScanFastPath


def _flask_only(app: Flask) -> Client:
    """A client of Flask's own pipeline, the fast path left out."""
    fast = app.wsgi_app
    assert isinstance(fast, ScanFastPath)
    return Client(fast.flask_wsgi, TestResponse)


@pytest.fixture
def dispatched(app: Flask, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths Flask's pipeline dispatched while the test ran."""
    seen: list[str] = []
    real: Callable[[], Any] = app.full_dispatch_request

    def spy() -> Any:
        from flask import request

        seen.append(request.full_path.rstrip("?"))
        return real()

    monkeypatch.setattr(app, "full_dispatch_request", spy)
    return seen


def test_scans_take_the_fast_path_and_other_requests_flasks(
    client: FlaskClient, world: World, dispatched: list[str]
) -> None:
    code = world.code(1)
    assert client.get("/api/v1/resolve/" + world.code(2)).json["verdict"] == "genuine"
    assert client.get("/q/" + code).status_code == 200
    assert client.get("/Q/" + code).status_code == 200
    assert client.get("/q/NOT-A-CODE").status_code == 200
    assert dispatched == []

    # Left to Flask: a query string (language switch, token replay), another method, a
    # code with "/" (a whole QR URL), the empty code, other pages.
    assert client.get(f"/q/{code}?lang=en").status_code == 200
    assert client.head("/q/" + code).status_code == 200
    url = "HTTPS://T.EXAMPLE.CN/Q/" + world.code(3)
    assert client.get("/api/v1/resolve/" + url).json["verdict"] == "genuine"
    assert client.get("/api/v1/resolve/").status_code == 404
    assert client.get("/kiosk").status_code == 200
    assert dispatched == [
        f"/q/{code}?lang=en",
        "/q/" + code,
        "/api/v1/resolve/" + url,
        "/api/v1/resolve/",
        "/kiosk",
    ]


def _headers(response: TestResponse) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k != "Content-Length"}


def test_the_resolve_api_answers_alike_on_both_paths(
    client: FlaskClient, app: Flask, world: World
) -> None:
    flask_only = _flask_only(app)
    headers = {"User-Agent": PHONE_UA}
    for fast_code, flask_code in [(world.code(10), world.code(11)), ("FORGED", "FORGED")]:
        fast = client.get("/api/v1/resolve/" + fast_code, headers=headers)
        slow = flask_only.get("/api/v1/resolve/" + flask_code, headers=headers)
        assert (fast.status_code, _headers(fast)) == (slow.status_code, _headers(slow))
        fast_body, slow_body = fast.json, slow.json
        assert fast_body is not None and slow_body is not None
        for body in (fast_body, slow_body):  # the scans' own times
            if "scan" in body:
                body["scan"]["first_scan_at"] = "…"
        assert fast_body == slow_body
    # Both scans were logged, with the client's user-agent class.
    assert [(s.channel, s.ua_class) for s in world.scans()] == [("api", "wechat")] * 4


def _page_text(response: TestResponse, code: str) -> str:
    html = response.get_data(as_text=True).replace(code, "<code>")
    return re.sub(r'(s=|data-t=")[\w.-]+', r"\1<token>", html)


@pytest.mark.parametrize(
    ("headers", "cookies", "english"),
    [
        ({"User-Agent": PHONE_UA}, {}, False),
        ({"Accept-Language": "en-US,en;q=0.8"}, {}, True),
        ({"Accept-Language": "zh-CN"}, {"lang": "en"}, True),
        ({"Accept-Language": "en"}, {"other": "1", "lang": "fr"}, True),
        ({"Accept-Language": "en"}, {"lang": "zh"}, False),
    ],
)
def test_the_phone_page_answers_alike_on_both_paths(
    client: FlaskClient,
    app: Flask,
    world: World,
    headers: dict[str, str],
    cookies: dict[str, str],
    english: bool,
) -> None:
    flask_only = _flask_only(app)
    for key, value in cookies.items():
        client.set_cookie(key, value)
        flask_only.set_cookie(key, value)
    fast_code, flask_code = world.code(20), world.code(21)
    fast = client.get("/q/" + fast_code, headers=headers)
    slow = flask_only.get("/q/" + flask_code, headers=headers)
    assert fast.status_code == slow.status_code == 200
    assert _headers(fast) == _headers(slow)
    assert "Accept-Language" in fast.headers["Vary"] and fast.headers["Cache-Control"] == "no-store"
    assert _page_text(fast, fast_code) == _page_text(slow, flask_code)
    assert ("Genuine" in fast.get_data(as_text=True)) is english


def test_odd_text_in_the_path_is_decoded_as_flask_decodes_it(
    client: FlaskClient, app: Flask, world: World
) -> None:
    flask_only = _flask_only(app)
    for text in ["中文码", "a.b", "%00", " "]:
        path = "/q/" + quote(text, safe="")
        fast, slow = client.get(path), flask_only.get(path)
        assert fast.status_code == slow.status_code == 200
        assert _page_text(fast, text) == _page_text(slow, text)
        api = "/api/v1/resolve/" + quote(text, safe="")
        assert client.get(api).get_data() == flask_only.get(api).get_data()


def test_errors_on_the_fast_path_are_answered_by_flasks_handlers(
    client: FlaskClient, app: Flask, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("the verdict query failed")

    monkeypatch.setattr(resolver, "resolve", broken)
    flask_only = _flask_only(app)
    # The API's problem+json, the page's error page: trace.api.problems decides both.
    for path, kind in [("/api/v1/resolve/X", "application/problem+json"), ("/q/X", "text/html")]:
        fast, slow = client.get(path), flask_only.get(path)
        assert fast.status_code == slow.status_code == 500
        assert fast.mimetype == slow.mimetype == kind
        assert fast.get_data() == slow.get_data()


def test_the_rate_limit_on_the_fast_path_is_a_429_problem(config: Config, world: World) -> None:
    limited = create_app(config.with_overrides(resolve_rate_limit="2 per minute"))
    try:
        client = limited.test_client()
        code = world.code(40)
        assert [client.get("/api/v1/resolve/" + code).status_code for _ in range(3)] == [
            200,
            200,
            429,
        ]
        r = client.get("/api/v1/resolve/" + code)
        assert r.mimetype == "application/problem+json" and int(r.headers["Retry-After"]) >= 1
    finally:
        close_app(limited)
