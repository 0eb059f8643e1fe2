"""Tenant isolation and the regulator's read-only, region-limited view.

Every /api/v1 route about batches, events or attachments is in a table below; a test reads
the app's url_map and fails when a route is added without a row here. Each row is tried in
both directions (Huaning co-op vs Songming farm): the intruder gets the same 404 a missing id
gets, learns nothing of the owner's content, changes nothing, and the owner's own request
succeeds (so the 404 is isolation, not a wrong URL).
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from werkzeug.test import TestResponse

from tests.factories import (
    BACKENDS,
    HUANING,
    HUANING_REG,
    SONGMING,
    SONGMING_REG,
    World,
    assert_problem,
    build_world,
    event_body,
    png_bytes,
    unique,
)

MISSING_ID = 2**31 - 1
TENANTS = {HUANING: "530424", SONGMING: "530127"}
REGULATOR_OF = {HUANING_REG: HUANING, SONGMING_REG: SONGMING}
DIRECTIONS = [(SONGMING, HUANING), (HUANING, SONGMING)]  # (intruder, owner)
WRITES = {"POST", "PATCH", "PUT", "DELETE"}


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    yield from build_world(request.param, tmp_path_factory.mktemp("isolation"))


Body = Callable[[World, str], dict[str, Any]]  # (world, owner) -> client.open() kwargs


def _json(payload: dict[str, Any]) -> Body:
    return lambda _w, _owner: {"json": payload}


def _upload(_w: World, _owner: str) -> dict[str, Any]:
    return {
        "data": {"file": (io.BytesIO(png_bytes()), "intruder.png"), "caption": "x"},
        "content_type": "multipart/form-data",
    }


def _new_batch_body(w: World, owner: str) -> dict[str, Any]:
    product_id, site_id = w.own_product_site(owner)
    return {"json": {"product_id": product_id, "site_id": site_id, "batch_no": unique("R")}}


@dataclass(frozen=True)
class Case:
    method: str
    rule: str
    target: str  # which of the owner's records fills the rule's id
    body: Body | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        extra = "+range" if self.headers else ""
        return f"{self.method} {self.rule.removeprefix('/api/v1')}{extra}"


#: Every batch/event/attachment route that addresses one record of one tenant.
CASES = [
    Case("GET", "/api/v1/batches/<int:batch_id>", "batch"),
    Case("PATCH", "/api/v1/batches/<int:batch_id>", "batch", _json({"grade": "篡改"})),
    Case("GET", "/api/v1/batches/<int:batch_id>/events", "batch"),
    Case("POST", "/api/v1/batches/<int:batch_id>/events", "batch", _json(event_body("care"))),
    Case("GET", "/api/v1/events/<int:event_id>", "event"),
    Case("PATCH", "/api/v1/events/<int:event_id>", "event", _json({"note": "篡改"})),
    Case("DELETE", "/api/v1/events/<int:event_id>", "fresh_event"),
    Case("GET", "/api/v1/batches/<int:batch_id>/attachments", "batch"),
    Case("POST", "/api/v1/batches/<int:batch_id>/attachments", "batch", _upload),
    Case("GET", "/api/v1/attachments/<int:attachment_id>", "photo"),
    Case("GET", "/api/v1/attachments/<int:attachment_id>/content", "video"),
    Case(
        "GET",
        "/api/v1/attachments/<int:attachment_id>/content",
        "video",
        headers={"Range": "bytes=0-99"},
    ),
]
#: Collection routes: tested by the list and cross-reference tests below.
COLLECTIONS = {("GET", "/api/v1/batches"), ("POST", "/api/v1/batches")}

#: Every write on production records, for the regulator.
REGULATOR_WRITES = [
    Case("POST", "/api/v1/products", "none", _json({"name": "监管员的产品"})),
    Case("PATCH", "/api/v1/products/<int:product_id>", "product", _json({"name": "改"})),
    Case("POST", "/api/v1/sites", "none", _json({"name": "基地", "region_code": "530424"})),
    Case("PATCH", "/api/v1/sites/<int:site_id>", "site", _json({"name": "改"})),
    Case("POST", "/api/v1/batches", "none", _new_batch_body),
    *[c for c in CASES if c.method in WRITES],
]


def _routes(world: World, pattern: str) -> set[tuple[str, str]]:
    found = set()
    for rule in world.app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/") and re.search(pattern, rule.rule):
            for method in rule.methods or ():
                if method not in {"HEAD", "OPTIONS"}:
                    found.add((method, rule.rule))
    return found


def test_every_record_route_is_in_the_isolation_table(world: World) -> None:
    covered = {(c.method, c.rule) for c in CASES} | COLLECTIONS
    assert _routes(world, r"batch|event|attachment") == covered


def test_every_record_write_is_in_the_regulator_table(world: World) -> None:
    routes = _routes(world, r"^/api/v1/(products|sites|batches|events|attachments)\b")
    assert {r for r in routes if r[0] in WRITES} == {(c.method, c.rule) for c in REGULATOR_WRITES}


# -- helpers ----------------------------------------------------------------------------


def _target_id(world: World, owner: str, target: str) -> int:
    ids = world.ids
    if target == "batch":
        return int(ids[f"{owner}:batch"])
    if target == "event":
        return int(ids[f"{owner}:event"])
    if target == "fresh_event":
        return int(world.new_event(owner, ids[f"{owner}:batch"], event_body("care"))["id"])
    if target in ("photo", "video"):
        return int(ids[f"{owner}:{target}"])
    product_id, site_id = world.own_product_site(owner)
    return {"product": product_id, "site": site_id}[target]


def _url(rule: str, obj_id: int) -> str:
    return re.sub(r"<int:\w+>", str(obj_id), rule)


def _send(world: World, username: str, case: Case, url: str, owner: str) -> TestResponse:
    kwargs = case.body(world, owner) if case.body else {}
    headers = {**world.headers(username), **case.headers}
    return world.client.open(url, method=case.method, headers=headers, **kwargs)


def _owner_view(world: World, owner: str) -> Any:
    """Everything the owner can see of its records, plus every table's row count."""
    batch = world.ids[f"{owner}:batch"]
    return (
        world.counts(),
        world.get(owner, f"/api/v1/batches/{batch}"),
        world.get(owner, f"/api/v1/batches/{batch}/events"),
        world.get(owner, f"/api/v1/batches/{batch}/attachments"),
        world.get(owner, "/api/v1/products"),
        world.get(owner, "/api/v1/sites"),
        len(world.media_files()),
    )


def _secrets(world: World, owner: str) -> list[str]:
    """Strings of the owner's records that must never reach another tenant."""
    batch_id = world.ids[f"{owner}:batch"]
    batch = world.get(owner, f"/api/v1/batches/{batch_id}")
    photo = world.get(owner, f"/api/v1/attachments/{world.ids[f'{owner}:photo']}")
    event = world.get(owner, f"/api/v1/events/{world.ids[f'{owner}:event']}")
    return [
        batch["batch_no"],
        batch["product"]["name"],
        batch["site"]["name"],
        photo["filename"],
        photo["caption"],
        photo["sha256"],
        event["place"],
        "ftyp",  # the video's bytes
    ]


# -- tenants ----------------------------------------------------------------------------


@pytest.mark.parametrize("intruder,owner", DIRECTIONS, ids=["sm->hn", "hn->sm"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_another_tenants_record_is_not_found(
    world: World, case: Case, intruder: str, owner: str
) -> None:
    target = _target_id(world, owner, case.target)
    url = _url(case.rule, target)
    secrets = _secrets(world, owner)
    before = _owner_view(world, owner)

    r = _send(world, intruder, case, url, owner)

    body = assert_problem(r, 404)
    text = r.get_data(as_text=True)
    assert not [s for s in secrets if s in text], text
    # Indistinguishable from an id that does not exist at all.
    missing = _send(world, intruder, case, _url(case.rule, MISSING_ID), owner)
    other = assert_problem(missing, 404)
    assert other["title"] == body["title"]
    assert other.get("detail", "").replace(str(MISSING_ID), "#") == body.get("detail", "").replace(
        str(target), "#"
    )
    assert _owner_view(world, owner) == before

    # Control: the same request from the owner succeeds, so the URL and body were right.
    mine = _send(world, owner, case, url, owner)
    assert mine.status_code in (200, 201, 204, 206), mine.get_data(as_text=True)[:300]


@pytest.mark.parametrize("username", [HUANING, SONGMING])
def test_lists_hold_only_own_rows(world: World, username: str) -> None:
    other = SONGMING if username == HUANING else HUANING
    own_enterprise = world.ids["enterprise_ids"][0 if username == HUANING else 1]
    batches = world.get(username, "/api/v1/batches")
    assert batches and {b["enterprise_id"] for b in batches} == {own_enterprise}
    assert world.ids[f"{other}:batch"] not in {b["id"] for b in batches}
    for url in ("/api/v1/products", "/api/v1/sites"):
        rows = world.get(username, url)
        assert rows and {row["enterprise_id"] for row in rows} == {own_enterprise}
    enterprises = world.get(username, "/api/v1/enterprises")
    assert [e["id"] for e in enterprises] == [own_enterprise]
    events = world.get(username, f"/api/v1/batches/{world.ids[f'{username}:batch']}/events")
    event_ids = {e["id"] for e in events}
    assert world.ids[f"{username}:event"] in event_ids
    assert world.ids[f"{other}:event"] not in event_ids
    attachments = world.get(
        username, f"/api/v1/batches/{world.ids[f'{username}:batch']}/attachments"
    )
    assert {a["batch_id"] for a in attachments} == {world.ids[f"{username}:batch"]}
    # Filtering by another tenant's product finds nothing rather than its batches.
    foreign_product, _ = world.own_product_site(other)
    assert world.get(username, f"/api/v1/batches?product_id={foreign_product}") == []


# -- references -------------------------------------------------------------------------


@pytest.mark.parametrize("intruder,owner", DIRECTIONS, ids=["sm->hn", "hn->sm"])
@pytest.mark.parametrize("field_name", ["product_id", "site_id"])
def test_new_batch_cannot_reference_another_tenants_master_data(
    world: World, intruder: str, owner: str, field_name: str
) -> None:
    own_product, own_site = world.own_product_site(intruder)
    foreign_product, foreign_site = world.own_product_site(owner)
    body = {"product_id": own_product, "site_id": own_site, "batch_no": unique("X")}
    body[field_name] = foreign_product if field_name == "product_id" else foreign_site
    before = world.counts()
    r = world.client.post("/api/v1/batches", json=body, headers=world.headers(intruder))
    problem = assert_problem(r, 422, field_name)
    # Same answer as for an id that exists nowhere.
    body[field_name] = MISSING_ID
    r2 = world.client.post("/api/v1/batches", json=body, headers=world.headers(intruder))
    problem2 = assert_problem(r2, 422, field_name)
    assert problem["title"] == problem2["title"]
    assert world.counts() == before
    # Nor can an existing batch be re-pointed at it.
    own_batch = world.ids[f"{intruder}:batch"]
    foreign = foreign_product if field_name == "product_id" else foreign_site
    r3 = world.client.patch(
        f"/api/v1/batches/{own_batch}", json={field_name: foreign}, headers=world.headers(intruder)
    )
    assert_problem(r3, 422, field_name)
    assert world.counts() == before


@pytest.mark.parametrize("intruder,owner", DIRECTIONS, ids=["sm->hn", "hn->sm"])
def test_event_cannot_correct_another_tenants_event(
    world: World, intruder: str, owner: str
) -> None:
    own_batch = world.ids[f"{intruder}:batch"]
    foreign_event = world.get(owner, f"/api/v1/events/{world.ids[f'{owner}:event']}")
    body = {
        "type": foreign_event["type"],
        "occurred_at": foreign_event["occurred_at"],
        "details": foreign_event["details"],
        "corrects_id": foreign_event["id"],
        "correction_reason": "试图改写他人记录",
    }
    before = world.counts()
    r = world.client.post(
        f"/api/v1/batches/{own_batch}/events", json=body, headers=world.headers(intruder)
    )
    problem = assert_problem(r, 422, "corrects_id")
    assert foreign_event["place"] not in r.get_data(as_text=True)
    assert "type" not in [e["field"] for e in problem.get("errors", [])]  # no type oracle
    assert world.counts() == before


def test_event_cannot_correct_an_event_of_another_own_batch(world: World) -> None:
    batch = world.new_batch(HUANING)
    body = {
        **event_body("care"),
        "corrects_id": world.ids[f"{HUANING}:event"],
        "correction_reason": "wrong batch",
    }
    before = world.counts()
    r = world.client.post(
        f"/api/v1/batches/{batch['id']}/events", json=body, headers=world.headers(HUANING)
    )
    assert_problem(r, 422, "corrects_id")
    assert world.counts() == before


@pytest.mark.parametrize("intruder,owner", DIRECTIONS, ids=["sm->hn", "hn->sm"])
def test_attachment_cannot_hang_off_another_tenants_event(
    world: World, intruder: str, owner: str
) -> None:
    before, files = world.counts(), world.media_files()
    r = world.upload(
        intruder,
        world.ids[f"{intruder}:batch"],
        png_bytes(),
        event_id=world.ids[f"{owner}:event"],
    )
    assert_problem(r, 422, "event_id")
    assert world.counts() == before and world.media_files() == files


# -- regulators -------------------------------------------------------------------------

READS = [c for c in CASES if c.method == "GET"]


@pytest.mark.parametrize("regulator", [HUANING_REG, SONGMING_REG])
@pytest.mark.parametrize("case", READS, ids=lambda c: c.id)
def test_regulator_reads_inside_its_region_only(world: World, regulator: str, case: Case) -> None:
    own = REGULATOR_OF[regulator]
    foreign = SONGMING if own == HUANING else HUANING
    inside = _send(
        world, regulator, case, _url(case.rule, _target_id(world, own, case.target)), own
    )
    assert inside.status_code in (200, 206), inside.get_data(as_text=True)[:300]
    owner_sees = _send(world, own, case, _url(case.rule, _target_id(world, own, case.target)), own)
    assert inside.get_data() == owner_sees.get_data()

    url = _url(case.rule, _target_id(world, foreign, case.target))
    outside = _send(world, regulator, case, url, foreign)
    assert_problem(outside, 404)
    text = outside.get_data(as_text=True)
    assert not [s for s in _secrets(world, foreign) if s in text]


@pytest.mark.parametrize("regulator", [HUANING_REG, SONGMING_REG])
@pytest.mark.parametrize("case", REGULATOR_WRITES, ids=lambda c: c.id)
@pytest.mark.parametrize("where", ["inside", "outside"])
def test_regulator_changes_nothing(world: World, regulator: str, case: Case, where: str) -> None:
    own = REGULATOR_OF[regulator]
    owner = own if where == "inside" else (SONGMING if own == HUANING else HUANING)
    url = case.rule
    if "<int:" in url:
        url = _url(url, _target_id(world, owner, case.target))
    before = _owner_view(world, owner)
    r = _send(world, regulator, case, url, owner)
    assert_problem(r, 403)
    assert _owner_view(world, owner) == before


@pytest.mark.parametrize("regulator", [HUANING_REG, SONGMING_REG])
def test_regulator_lists_hold_only_in_region_enterprises(world: World, regulator: str) -> None:
    own = REGULATOR_OF[regulator]
    enterprise_id = world.ids["enterprise_ids"][0 if own == HUANING else 1]
    enterprises = world.get(regulator, "/api/v1/enterprises")
    assert [(e["id"], e["region_code"]) for e in enterprises] == [(enterprise_id, TENANTS[own])]
    for url in ("/api/v1/batches", "/api/v1/products", "/api/v1/sites"):
        rows = world.get(regulator, url)
        assert rows and {row["enterprise_id"] for row in rows} == {enterprise_id}, url
    assert world.get(regulator, "/api/v1/batches") == world.get(own, "/api/v1/batches")
