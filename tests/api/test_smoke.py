from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient
from openapi_spec_validator import validate

from tests.conftest import bearer


def test_demo_batch_readable_with_token(client: FlaskClient, demo: dict[str, Any]) -> None:
    token = demo["tokens"]["huaning-coop"]
    r = client.get(f"/api/v1/batches/{demo['batch_id']}", headers=bearer(token))
    assert r.status_code == 200, r.json
    assert r.json["batch_no"] == "HN-GJ-2026-11-001"
    assert r.json["product"]["name"] == "华宁柑桔"
    events = client.get(f"/api/v1/batches/{demo['batch_id']}/events", headers=bearer(token))
    assert events.status_code == 200
    types = [e["type"] for e in events.json]
    assert types.count("pesticide") == 2 and types.count("fertilizing") == 2
    assert "shipping" in types and "inspection" in types


def test_openapi_document(client: FlaskClient) -> None:
    r = client.get("/api/v1/openapi.json")
    assert r.status_code == 200
    assert r.json["openapi"].startswith("3.")
    assert "/api/v1/batches/{batch_id}/events" in r.json["paths"]
    # Against the OpenAPI 3.0 meta-schema, not just "it is JSON".
    validate(r.json)
