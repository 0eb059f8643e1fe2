"""Bad input gets a 4xx application/problem+json naming each bad field; nothing is partly
written; no input makes the API answer 500."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.factories import (
    BACKENDS,
    HUANING,
    HUANING_REG,
    PROBLEM_JSON,
    World,
    assert_problem,
    build_world,
    event_body,
    problem_fields,
    unique,
)
from trace.validation import uscc_check_char

ADMIN = "admin"


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    yield from build_world(request.param, tmp_path_factory.mktemp("problems"))


def _post(world: World, url: str, body: Any, user: str = HUANING) -> Any:
    return world.client.post(url, json=body, headers=world.headers(user))


def _batch_body(world: World) -> dict[str, Any]:
    product_id, site_id = world.own_product_site(HUANING)
    return {
        "product_id": product_id,
        "site_id": site_id,
        "batch_no": unique("P"),
        "harvest_date": "2026-11-01",
        "pack_date": "2026-11-02",
        "quantity": "500.5",
        "unit": "kg",
        "grade": "一级",
    }


def _uscc(body17: str = "91530424MA6K00001") -> str:
    return body17 + uscc_check_char(body17)


# -- named fields -----------------------------------------------------------------------


def test_unknown_field_is_rejected_by_name(world: World) -> None:
    before = world.counts()
    body = {**_batch_body(world), "colour": "orange", "owner_id": 2}
    r = _post(world, "/api/v1/batches", body)
    assert_problem(r, 422, "colour", "owner_id")
    r = _post(world, "/api/v1/products", {"name": "柑桔", "enterprise_id": 2})
    assert_problem(r, 422, "enterprise_id")  # no way to write into another tenant
    assert world.counts() == before


def test_missing_required_fields_are_named(world: World) -> None:
    before = world.counts()
    assert_problem(_post(world, "/api/v1/batches", {}), 422, "product_id", "batch_no")
    assert_problem(_post(world, "/api/v1/sites", {"name": "x"}), 422, "region_code")
    batch = world.ids["batch_id"]
    assert_problem(
        _post(world, f"/api/v1/batches/{batch}/events", {"details": {}}), 422, "type", "occurred_at"
    )
    assert world.counts() == before


@pytest.mark.parametrize(
    "field,value",
    [
        ("product_id", "one"),
        ("product_id", 1.5),
        ("product_id", None),
        ("site_id", [1]),
        ("batch_no", 12),
        ("batch_no", "has spaces and 中文"),
        ("harvest_date", "2026-13-01"),
        ("harvest_date", "yesterday"),
        ("quantity", "lots"),
        ("quantity", -1),
        ("quantity", "NaN"),
        ("unit", ""),
        ("grade", {"a": 1}),
    ],
)
def test_wrong_types_and_values_are_named(world: World, field: str, value: Any) -> None:
    before = world.counts()
    body = {**_batch_body(world), field: value}
    assert_problem(_post(world, "/api/v1/batches", body), 422, field)
    assert world.counts() == before


def test_pack_before_harvest(world: World) -> None:
    body = {**_batch_body(world), "harvest_date": "2026-11-05", "pack_date": "2026-11-01"}
    assert_problem(_post(world, "/api/v1/batches", body), 422, "pack_date")


def test_duplicate_batch_number_is_a_conflict_naming_it(world: World) -> None:
    body = _batch_body(world)
    assert _post(world, "/api/v1/batches", body).status_code == 201
    before = world.counts()
    assert_problem(_post(world, "/api/v1/batches", body), 409, "batch_no")
    assert world.counts() == before


def test_renaming_a_batch_to_a_taken_number_is_a_conflict(world: World) -> None:
    # The unique constraint answered this one: a 500 (IntegrityError) before.
    first, second = world.new_batch(), world.new_batch()
    before = world.counts()
    r = world.client.patch(
        f"/api/v1/batches/{second['id']}",
        json={"batch_no": first["batch_no"]},
        headers=world.headers(HUANING),
    )
    assert_problem(r, 409, "batch_no")
    assert world.counts() == before
    assert world.get(HUANING, f"/api/v1/batches/{second['id']}")["batch_no"] == second["batch_no"]
    same = world.client.patch(
        f"/api/v1/batches/{second['id']}",
        json={"batch_no": second["batch_no"]},
        headers=world.headers(HUANING),
    )
    assert same.status_code == 200


def test_bad_uscc_check_character(world: World) -> None:
    good = _uscc()
    wrong = good[:17] + ("0" if good[17] != "0" else "1")
    before = world.counts()
    body = {"uscc": wrong, "name": "某合作社", "region_code": "530424"}
    assert_problem(_post(world, "/api/v1/enterprises", body, ADMIN), 422, "uscc")
    for malformed in ("91530424MA6K0000I", "91５30424MA6K00001", good + "\n", good.lower()):
        r = _post(world, "/api/v1/enterprises", {**body, "uscc": malformed}, ADMIN)
        assert_problem(r, 422, "uscc")
    assert world.counts() == before
    r = _post(world, "/api/v1/enterprises", {**body, "uscc": good}, ADMIN)
    assert r.status_code == 201, r.get_json()


@pytest.mark.parametrize("gtin", ["4006381333932", "400638133393", "ABCDEFGHIJKLM", "", "1"])
def test_bad_gtin_check_digit(world: World, gtin: str) -> None:
    before = world.counts()
    assert_problem(_post(world, "/api/v1/products", {"name": "柑桔", "gtin": gtin}), 422, "gtin")
    assert world.counts() == before


def test_good_gtin_accepted(world: World) -> None:
    r = _post(world, "/api/v1/products", {"name": "柑桔", "gtin": "4006381333931"})
    assert r.status_code == 201 and r.get_json()["gtin"] == "4006381333931"


@pytest.mark.parametrize("code", ["999999", "53042", "5304245", "ABCDEF", "530400x"])
def test_bad_region_code(world: World, code: str) -> None:
    before = world.counts()
    r = _post(world, "/api/v1/sites", {"name": "基地", "region_code": code})
    assert_problem(r, 422, "region_code")
    r = world.client.patch(
        f"/api/v1/enterprises/{world.ids['enterprise_ids'][0]}",
        json={"region_code": code},
        headers=world.headers(HUANING),
    )
    assert_problem(r, 422, "region_code")
    assert world.counts() == before


@pytest.mark.parametrize(
    "details,field",
    [
        ({"registration_no": None}, "details.registration_no"),
        ({"registration_no": "XX123"}, "details.registration_no"),
        ({"registration_no": "PD2008"}, "details.registration_no"),
        ({"registration_no": "pd20080123 "}, "details.registration_no"),
        ({"phi_days": -1}, "details.phi_days"),
        ({"phi_days": "two weeks"}, "details.phi_days"),
        ({"phi_days": 14.5}, "details.phi_days"),
        ({"dose": "0"}, "details.dose"),
        ({"target": ""}, "details.target"),
        ({"sprayer": "backpack"}, "details.sprayer"),
    ],
)
def test_pesticide_details_are_validated(world: World, details: dict[str, Any], field: str) -> None:
    body = event_body("pesticide", **details)
    body["details"] = {k: v for k, v in body["details"].items() if v is not None}
    before = world.counts()
    r = _post(world, f"/api/v1/batches/{world.ids['batch_id']}/events", body)
    assert_problem(r, 422, field)
    assert world.counts() == before


@pytest.mark.parametrize(
    "items,field",
    [
        ([{"name": "有机磷", "result": "阴性", "passed": "maybe"}], "details.items.0.passed"),
        ([{"name": "有机磷", "result": "阴性"}], "details.items.0.passed"),
        (
            [{"name": "a", "result": "b", "passed": True}, {"result": "b", "passed": True}],
            "details.items.1.name",
        ),
        ([], "details.items"),
        ("none", "details.items"),
    ],
)
def test_inspection_item_errors_name_the_item(world: World, items: Any, field: str) -> None:
    before = world.counts()
    body = event_body("inspection", items=items)
    r = _post(world, f"/api/v1/batches/{world.ids['batch_id']}/events", body)
    assert_problem(r, 422, field)
    assert world.counts() == before


@pytest.mark.parametrize(
    "kind,details,field",
    [
        ("inspection", {"inspector": None}, "details.inspector"),
        ("inspection", {"verdict": "ok"}, "details.verdict"),
        ("fertilizing", {"amount": None}, "details.amount"),
        ("fertilizing", {"name": None}, "details.name"),
        ("certification", {"cert_type": "优质"}, "details.cert_type"),
        ("certification", {"valid_until": "2025-01-01"}, "details.valid_until"),
        ("certification", {"number": None}, "details.number"),
        ("shipping", {"destination_region": "5301"}, "details.destination_region"),
        ("packing", {"units": 2.5}, "details.units"),
        ("care", {"operation": None}, "details.operation"),
    ],
)
def test_other_details_are_validated(
    world: World, kind: str, details: dict[str, Any], field: str
) -> None:
    body = event_body(kind, **details)
    body["details"] = {k: v for k, v in body["details"].items() if v is not None}
    before = world.counts()
    r = _post(world, f"/api/v1/batches/{world.ids['batch_id']}/events", body)
    assert_problem(r, 422, field)
    assert world.counts() == before


def test_event_time_out_of_range_or_wrong(world: World) -> None:
    url = f"/api/v1/batches/{world.ids['batch_id']}/events"
    before = world.counts()
    for when in ("0001-01-01T00:00:00", "9999-12-31T23:59:59-12:00", "tomorrow", 20260101, ""):
        r = _post(world, url, event_body("care", occurred_at=when))  # type: ignore[arg-type]
        assert_problem(r, 422, "occurred_at")
    assert world.counts() == before


def test_unknown_event_type(world: World) -> None:
    body = {**event_body("care"), "type": "dancing"}
    r = _post(world, f"/api/v1/batches/{world.ids['batch_id']}/events", body)
    assert_problem(r, 422, "type")


def test_malformed_json_is_400_problem(world: World) -> None:
    before = world.counts()
    for url in ("/api/v1/batches", "/api/v1/products", "/api/v1/auth/token"):
        r = world.client.post(
            url, data='{"name": ', content_type="application/json", headers=world.headers(HUANING)
        )
        assert_problem(r, 400)
    assert world.counts() == before


def test_unauthenticated_is_401_problem(world: World) -> None:
    r = world.client.get("/api/v1/batches")
    assert_problem(r, 401)
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_unknown_route_and_method_are_problems(world: World) -> None:
    assert_problem(world.client.get("/api/v1/nothing-here", headers=world.headers(HUANING)), 404)
    r = world.client.put("/api/v1/batches", headers=world.headers(HUANING))
    assert_problem(r, 405)
    assert "GET" in r.headers["Allow"]


# -- fuzz: no 500, nothing written, always a problem ------------------------------------

NASTY_VALUES: list[Any] = [
    None,
    True,
    -1,
    1.5,
    10**30,
    "",
    "x" * 5000,
    "a\x00b",
    "\ud800",
    "0001-01-01",
    "NaN",
    [],
    {"$ne": 1},
]

GARBAGE_BODIES: list[bytes] = [
    b"",
    b"{",
    b"[]",
    b"null",
    b"123",
    b'"text"',
    b'{"a": NaN}',
    b"Infinity",
    b"\xff\xfe\x00",
    b"[" * 100_000,
    b'{"details": ' * 5000,
    b"{" + b'"k": 1,' * 2000 + b'"k": 2}',
]


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    url: Callable[[World], str]
    body: Callable[[World], dict[str, Any]]
    user: str = HUANING


def _fresh_batch(world: World) -> int:
    return int(world.new_batch(HUANING)["id"])


def _fresh_event(world: World) -> int:
    return int(world.new_event(HUANING, _fresh_batch(world), event_body("care"))["id"])


ENDPOINTS = [
    Endpoint(
        "product",
        "POST",
        lambda w: "/api/v1/products",
        lambda w: {"name": "柑桔", "category": "水果", "brand": "b", "gtin": "4006381333931"},
    ),
    Endpoint(
        "product-patch",
        "PATCH",
        lambda w: f"/api/v1/products/{w.own_product_site(HUANING)[0]}",
        lambda w: {"specification": "5kg", "gtin": None},
    ),
    Endpoint(
        "site",
        "POST",
        lambda w: "/api/v1/sites",
        lambda w: {
            "name": "基地",
            "region_code": "530424",
            "village": "华溪村",
            "latitude": 24.2,
            "longitude": 102.9,
            "area_mu": "12.5",
        },
    ),
    Endpoint(
        "site-patch",
        "PATCH",
        lambda w: f"/api/v1/sites/{w.own_product_site(HUANING)[1]}",
        lambda w: {"township": "盘溪镇", "area_mu": "320"},
    ),
    Endpoint("batch", "POST", lambda w: "/api/v1/batches", _batch_body),
    Endpoint(
        "batch-patch",
        "PATCH",
        lambda w: f"/api/v1/batches/{_fresh_batch(w)}",
        lambda w: {"grade": "二级", "quantity": "10", "status": "held", "site_id": None},
    ),
    Endpoint(
        "event-pesticide",
        "POST",
        lambda w: f"/api/v1/batches/{_fresh_batch(w)}/events",
        lambda w: {**event_body("pesticide"), "place": "基地", "actor": "王", "note": "n"},
    ),
    Endpoint(
        "event-inspection",
        "POST",
        lambda w: f"/api/v1/batches/{_fresh_batch(w)}/events",
        lambda w: event_body("inspection"),
    ),
    Endpoint(
        "event-correction",
        "POST",
        lambda w: f"/api/v1/batches/{w.ids['batch_id']}/events",
        lambda w: {
            **event_body("fertilizing"),
            "corrects_id": w.ids[f"{HUANING}:event"],
            "correction_reason": "数量记错",
        },
    ),
    Endpoint(
        "event-patch",
        "PATCH",
        lambda w: f"/api/v1/events/{_fresh_event(w)}",
        lambda w: {"occurred_at": "2026-06-02T10:00:00+08:00", "note": "n", "details": {}},
    ),
    Endpoint(
        "enterprise",
        "POST",
        lambda w: "/api/v1/enterprises",
        lambda w: {
            "uscc": _uscc("9153042" + unique("")[-10:].upper().replace("-", "0")[:10]),
            "name": "合作社",
            "region_code": "530424",
            "contact_phone": "123",
        },
        ADMIN,
    ),
    Endpoint(
        "enterprise-patch",
        "PATCH",
        lambda w: f"/api/v1/enterprises/{w.ids['enterprise_ids'][0]}",
        lambda w: {"contact_name": "李", "wechat_account": "wx"},
    ),
    Endpoint(
        "user",
        "POST",
        lambda w: "/api/v1/users",
        lambda w: {
            "username": unique("op"),
            "password": "long-enough-pw",
            "role": "enterprise_operator",
            "display_name": "操作员",
        },
    ),
    Endpoint(
        "login",
        "POST",
        lambda w: "/api/v1/auth/token",
        lambda w: {"username": "huaning-coop", "password": "wrong-password", "token_name": "t"},
    ),
    Endpoint("token", "POST", lambda w: "/api/v1/tokens", lambda w: {"name": "ci"}),
]


def _mutations(body: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """Each field (and each field of `details`) replaced by each nasty value."""
    for key in body:
        for value in NASTY_VALUES:
            yield key, {**body, key: value}
        if isinstance(body[key], dict):
            for sub in body[key]:
                for value in NASTY_VALUES:
                    yield f"{key}.{sub}", {**body, key: {**body[key], sub: value}}
    yield "unknown", {**body, "unexpected": 1}


def _check_refused_cleanly(world: World, r: Any, before: dict[str, int], what: str) -> None:
    assert r.status_code < 500, (what, r.status_code, r.get_data(as_text=True)[:300])
    if r.status_code >= 400:
        assert r.mimetype == PROBLEM_JSON, what
        assert world.counts() == before, what


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_fuzzed_fields_never_500_and_never_half_write(world: World, endpoint: Endpoint) -> None:
    url = endpoint.url(world)
    headers = world.headers(endpoint.user)
    before = world.counts()
    for what, body in _mutations(endpoint.body(world)):
        # Encoded here (ASCII escapes), as a real client would send a lone surrogate.
        raw = json.dumps(body)
        r = world.client.open(
            url, method=endpoint.method, data=raw, content_type="application/json", headers=headers
        )
        _check_refused_cleanly(world, r, before, f"{endpoint.name} {what}={body}"[:300])
        if r.status_code == 422:
            assert problem_fields(r), what  # a 422 always names what is wrong
        if r.status_code < 400:
            before = world.counts()  # a valid variant wrote; that is the new baseline


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_garbage_bodies_never_500(world: World, endpoint: Endpoint) -> None:
    url = endpoint.url(world)
    headers = world.headers(endpoint.user)
    before = world.counts()
    for raw in GARBAGE_BODIES:
        for content_type in ("application/json", "text/plain", "application/x-www-form-urlencoded"):
            r = world.client.open(
                url, method=endpoint.method, data=raw, content_type=content_type, headers=headers
            )
            what = f"{endpoint.name} {content_type} {raw[:40]!r}"
            _check_refused_cleanly(world, r, before, what)
            if r.status_code < 400:
                before = world.counts()


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/batches/99999999999999999999",
        "/api/v1/batches/2147483648/events",
        "/api/v1/events/9223372036854775808",
        "/api/v1/attachments/18446744073709551616/content",
        "/api/v1/products/0",
        "/api/v1/sites/4294967296",
        "/api/v1/enterprises/99999999999999999999",
        "/api/v1/batches?product_id=99999999999999999999",
        "/api/v1/batches?status=%00",
    ],
)
def test_huge_ids_in_urls_are_not_found(world: World, path: str) -> None:
    r = world.client.get(path, headers=world.headers(HUANING))
    assert r.status_code in (200, 404, 422), (r.status_code, r.get_data(as_text=True)[:300])
    assert r.status_code == 200 or r.mimetype == PROBLEM_JSON


def test_huge_ids_in_writes(world: World) -> None:
    headers = world.headers(HUANING)
    before = world.counts()
    for method, url, body in (
        ("PATCH", "/api/v1/batches/99999999999999999999", {"grade": "x"}),
        ("PATCH", "/api/v1/products/2147483648", {"name": "x"}),
        ("DELETE", "/api/v1/events/99999999999999999999", None),
        ("DELETE", "/api/v1/tokens/99999999999999999999", None),
        ("PATCH", "/api/v1/events/2147483648", {"note": "x"}),
        ("POST", "/api/v1/batches/2147483648/events", event_body("care")),
    ):
        r = world.client.open(url, method=method, json=body, headers=headers)
        assert_problem(r, 404)
    assert world.counts() == before


def _id_routes(world: World) -> list[tuple[str, str]]:
    """(method, url) of every API route with an integer in its path, the integer(s) huge."""
    out = []
    for rule in world.app.url_map.iter_rules():
        # Ids are the <int:..._id> arguments; /resolve/<path:code> takes text.
        if not rule.rule.startswith("/api/v1/") or not rule.arguments:
            continue
        if not all(name.endswith("_id") for name in rule.arguments):
            continue
        values = {name: 2**63 for name in rule.arguments}
        url = world.app.url_map.bind("localhost").build(rule.endpoint, values)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            out.append((method, url))
    return out


def test_every_id_route_answers_a_huge_id_with_a_problem(world: World) -> None:
    """Walks the URL map, so a route added later is covered: alerts and devices once bound
    a 64-bit id into the query and answered 500 (OverflowError on SQLite)."""
    routes = _id_routes(world)
    assert any("/alerts/" in url for _m, url in routes)
    before = world.counts()
    for user in (HUANING, HUANING_REG, ADMIN):
        for method, url in routes:
            r = world.client.open(url, method=method, json={}, headers=world.headers(user))
            assert 400 <= r.status_code < 500, (user, method, url, r.get_data(as_text=True)[:300])
            assert r.mimetype == PROBLEM_JSON, (method, url)
    assert world.counts() == before
