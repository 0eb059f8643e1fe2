"""Tiny zh-CN/en message catalogue. zh-CN first; English on request.

A catalogue in code keeps pages free of a translation toolchain; each page family adds its
strings to MESSAGES under its own key prefix.
"""

from __future__ import annotations

import functools
from typing import Any

from flask import Flask, Response, g, request
from werkzeug.datastructures import LanguageAccept
from werkzeug.http import parse_accept_header

LANGUAGES = ("zh", "en")
DEFAULT_LANGUAGE = "zh"
COOKIE = "lang"

MESSAGES: dict[str, dict[str, str]] = {
    "app.name": {"zh": "农产品质量安全追溯平台", "en": "Agricultural Product Traceability"},
    "lang.switch": {"zh": "English", "en": "中文"},
    "error.back": {"zh": "返回首页", "en": "Back to home"},
    "login.title": {"zh": "登录", "en": "Sign in"},
    "login.username": {"zh": "用户名", "en": "Username"},
    "login.password": {"zh": "密码", "en": "Password"},
    "login.submit": {"zh": "登录", "en": "Sign in"},
    "login.failed": {"zh": "用户名或密码错误", "en": "Wrong username or password"},
    "logout": {"zh": "退出", "en": "Sign out"},
}


def add_messages(messages: dict[str, dict[str, str]]) -> None:
    MESSAGES.update(messages)


def choose_language(asked: str | None, accept_language: str | None) -> str:
    """The page's language: the one asked for (``?lang=``, else the cookie) if we have
    it, else the browser's preference (the Accept-Language header), else zh."""
    return asked if asked in LANGUAGES else language_for_header(accept_language)


def use_language(lang: str) -> None:
    """Fix the language of what is rendered in this app context (translate, pages)."""
    g.lang = lang


def current_language() -> str:
    chosen = g.get("lang")  # one look-up of the context's g: translate asks per string
    if chosen is not None:
        return str(chosen)
    chosen = choose_language(
        request.args.get("lang") or request.cookies.get(COOKIE),
        request.headers.get("Accept-Language"),
    )
    use_language(chosen)
    return chosen


def translate(key: str, **values: Any) -> str:
    entry = MESSAGES.get(key)
    text = key if entry is None else entry.get(current_language(), entry[DEFAULT_LANGUAGE])
    return text.format(**values) if values else text


def other_language() -> str:
    return "en" if current_language() == "zh" else "zh"


def init_app(app: Flask) -> None:
    @app.context_processor
    def _inject() -> dict[str, Any]:
        return {"_": translate, "lang": current_language(), "other_lang": other_language()}

    @app.after_request
    def _remember(response: Response) -> Response:
        # Most requests (every API call, every scan) have no query string: skip parsing it.
        chosen = request.args.get("lang") if request.query_string else None
        if chosen in LANGUAGES:
            response.set_cookie(COOKIE, chosen, max_age=365 * 24 * 3600, samesite="Lax")
        if response.mimetype == "text/html":
            response.vary.update(_LANGUAGE_FROM)  # keeping what else it varies by
        return response


#: An HTML page's language follows Accept-Language and the cookie: caches must too.
_LANGUAGE_FROM = ("Accept-Language", "Cookie")
VARY_BY_LANGUAGE = ("Vary", ", ".join(_LANGUAGE_FROM))


@functools.lru_cache(maxsize=512)
def language_for_header(accept_language: str | None) -> str:
    """The language an Accept-Language header prefers: phones send a few distinct ones,
    and parsing the header per scan was a twentieth of a phone scan's CPU."""
    accept = parse_accept_header(accept_language, LanguageAccept)
    best = accept.best_match(["zh", "zh-CN", "en"], default="zh")
    return "en" if best and best.startswith("en") else DEFAULT_LANGUAGE
