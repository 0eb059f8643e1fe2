"""The peer of bench_resolve.py: a bare Flask JSON endpoint, served the same way (gunicorn,
2 sync workers), so the resolve figures can be read as a ratio of "Flask doing nothing"."""

from __future__ import annotations

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue

app = Flask(__name__)


@app.get("/bare/<code>")
def bare(code: str) -> ResponseReturnValue:
    return jsonify({"verdict": "genuine", "code": code})
