"""Products, origin sites and batches through the API: what an enterprise records about its
own production, and the rules that keep a batch's identity straight."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.factories import (
    BACKENDS,
    HUANING,
    SONGMING,
    World,
    assert_problem,
    build_world,
    unique,
)


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    yield from build_world(request.param, tmp_path_factory.mktemp("records"))


def _send(world: World, method: str, url: str, body: Any = None, user: str = HUANING) -> Any:
    return world.client.open(url, method=method, json=body, headers=world.headers(user))


def test_product_create_read_update(world: World) -> None:
    body = {
        "name": "华宁沃柑",
        "category": "水果/柑橘",
        "specification": "10kg/箱",
        "brand": "华宁柑桔",
        "gtin": "06901234567892",
    }
    r = _send(world, "POST", "/api/v1/products", body)
    assert r.status_code == 201, r.get_json()
    product = r.get_json()
    assert {k: product[k] for k in body} == body
    assert product["enterprise_id"] == world.ids["enterprise_ids"][0]
    assert world.get(HUANING, f"/api/v1/products/{product['id']}") == product
    r = _send(world, "PATCH", f"/api/v1/products/{product['id']}", {"gtin": None, "brand": "沃柑"})
    assert r.status_code == 200 and r.get_json()["gtin"] is None and r.get_json()["brand"] == "沃柑"
    assert r.get_json()["name"] == "华宁沃柑"  # a partial update leaves the rest alone


def test_site_create_read_update(world: World) -> None:
    body = {
        "name": "青龙镇基地",
        "region_code": "530424",
        "township": "青龙镇",
        "village": "海关村",
        "latitude": 24.25,
        "longitude": 102.95,
        "area_mu": "150.50",
    }
    r = _send(world, "POST", "/api/v1/sites", body)
    assert r.status_code == 201, r.get_json()
    site = r.get_json()
    assert {k: site[k] for k in body} == body
    r = _send(world, "PATCH", f"/api/v1/sites/{site['id']}", {"area_mu": "160"})
    assert r.status_code == 200 and r.get_json()["area_mu"] == "160.00"


@pytest.mark.parametrize(
    "field,value",
    [("latitude", 91), ("longitude", -181), ("area_mu", "-1"), ("area_mu", "1e12"), ("name", "")],
)
def test_site_values_out_of_range(world: World, field: str, value: Any) -> None:
    before = world.counts()
    body = {"name": "基地", "region_code": "530424", field: value}
    assert_problem(_send(world, "POST", "/api/v1/sites", body), 422, field)
    assert world.counts() == before


def test_batch_detail_nests_product_and_site(world: World) -> None:
    batch = world.get(HUANING, f"/api/v1/batches/{world.ids['batch_id']}")
    assert batch["batch_no"] == "HN-GJ-2026-11-001"
    assert batch["product"]["name"] == "华宁柑桔" and batch["product"]["id"] == batch["product_id"]
    assert batch["site"]["region_code"] == "530424" and batch["site"]["id"] == batch["site_id"]
    assert batch["status"] == "open" and batch["labelled"] is False
    assert batch["quantity"] == "12000.000" and batch["unit"] == "kg"


def test_batch_create_and_list_filters(world: World) -> None:
    product = _send(world, "POST", "/api/v1/products", {"name": "冰糖橙"}).get_json()
    made = world.new_batch(HUANING, product_id=product["id"], site_id=None, grade="特级")
    assert made["site"] is None and made["grade"] == "特级" and made["flags"] == []
    by_product = world.get(HUANING, f"/api/v1/batches?product_id={product['id']}")
    assert [b["id"] for b in by_product] == [made["id"]]
    _send(world, "PATCH", f"/api/v1/batches/{made['id']}", {"status": "held"})
    held = world.get(HUANING, "/api/v1/batches?status=held")
    assert made["id"] in {b["id"] for b in held} and {b["status"] for b in held} == {"held"}
    assert_problem(
        world.client.get("/api/v1/batches?status=lost", headers=world.headers(HUANING)),
        422,
        "status",
    )


def test_batch_numbers_are_unique_per_enterprise_only(world: World) -> None:
    number = unique("SAME")
    world.new_batch(HUANING, batch_no=number)
    before = world.counts()
    hn_product, _ = world.own_product_site(HUANING)
    r = _send(world, "POST", "/api/v1/batches", {"product_id": hn_product, "batch_no": number})
    assert_problem(r, 409, "batch_no")
    assert world.counts() == before
    other = world.new_batch(SONGMING, batch_no=number)  # another enterprise may reuse it
    assert other["batch_no"] == number


def test_batch_patch_keeps_pack_after_harvest(world: World) -> None:
    batch = world.new_batch(harvest_date="2026-10-01", pack_date="2026-10-03")
    before = world.counts()
    r = _send(world, "PATCH", f"/api/v1/batches/{batch['id']}", {"pack_date": "2026-09-30"})
    assert_problem(r, 422, "pack_date")
    r = _send(world, "PATCH", f"/api/v1/batches/{batch['id']}", {"harvest_date": "2026-10-04"})
    assert_problem(r, 422, "pack_date")
    assert world.counts() == before
    r = _send(world, "PATCH", f"/api/v1/batches/{batch['id']}", {"pack_date": "2026-10-05"})
    assert r.status_code == 200


def test_recalled_is_not_a_status_a_patch_can_set(world: World) -> None:
    batch = world.new_batch()
    r = _send(world, "PATCH", f"/api/v1/batches/{batch['id']}", {"status": "recalled"})
    assert_problem(r, 422, "status")
    assert world.get(HUANING, f"/api/v1/batches/{batch['id']}")["status"] == "open"


def test_platform_admin_reads_everything_and_writes_no_records(world: World) -> None:
    batches = world.get("admin", "/api/v1/batches")
    assert {world.ids["batch_id"], world.ids["tomato_batch_id"]} <= {b["id"] for b in batches}
    before = world.counts()
    r = _send(world, "POST", "/api/v1/products", {"name": "x"}, user="admin")
    assert_problem(r, 403)
    r = _send(world, "PATCH", f"/api/v1/batches/{world.ids['batch_id']}", {"grade": "x"}, "admin")
    assert_problem(r, 403)
    assert world.counts() == before


def test_changes_are_audited(world: World) -> None:
    from sqlalchemy import select

    from trace.models import AuditEntry

    batch = world.new_batch()
    _send(world, "PATCH", f"/api/v1/batches/{batch['id']}", {"grade": "二级"})
    with world.db() as s:
        entries = s.scalars(
            select(AuditEntry).where(
                AuditEntry.entity == "batch", AuditEntry.entity_id == str(batch["id"])
            )
        ).all()
    assert [e.action for e in entries] == ["create", "update"]
    assert entries[1].payload == {"grade": "二级"}
    assert entries[1].prev_hash and entries[1].hash != entries[0].hash


def test_openapi_documents_every_records_route(world: World) -> None:
    doc = world.client.get("/api/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    for path in (
        "/api/v1/products",
        "/api/v1/sites/{site_id}",
        "/api/v1/batches/{batch_id}",
        "/api/v1/batches/{batch_id}/events",
        "/api/v1/events/{event_id}",
        "/api/v1/batches/{batch_id}/attachments",
        "/api/v1/attachments/{attachment_id}/content",
        "/api/v1/auth/token",
    ):
        assert path in doc["paths"], path
    schemas = doc["components"]["schemas"]
    assert "BatchIn" in schemas and "product_id" in schemas["BatchIn"]["required"]
