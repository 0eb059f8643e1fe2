"""Trace events: every type with its own details, the pre-harvest-interval flag, and
corrections instead of edits once a batch is labelled."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.factories import (
    BACKENDS,
    DETAILS,
    HUANING,
    World,
    assert_problem,
    build_world,
    event_body,
)

PHI_FLAG = "pre_harvest_interval_violation"


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    yield from build_world(request.param, tmp_path_factory.mktemp("events"))


def _events_url(batch_id: int) -> str:
    return f"/api/v1/batches/{batch_id}/events"


def _batch(world: World, batch_id: int) -> Any:
    return world.get(HUANING, f"/api/v1/batches/{batch_id}")


def _post(world: World, batch_id: int, body: dict[str, Any]) -> Any:
    return world.client.post(_events_url(batch_id), json=body, headers=world.headers(HUANING))


def _patch(world: World, event_id: int, body: dict[str, Any]) -> Any:
    return world.client.patch(
        f"/api/v1/events/{event_id}", json=body, headers=world.headers(HUANING)
    )


def _delete(world: World, event_id: int) -> Any:
    return world.client.delete(f"/api/v1/events/{event_id}", headers=world.headers(HUANING))


# -- every type --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(DETAILS))
def test_every_event_type_is_recorded_with_its_details(world: World, kind: str) -> None:
    batch = world.new_batch()
    body = {**event_body(kind), "place": "华溪村", "actor": "李国华", "note": "记录"}
    event = world.new_event(HUANING, batch["id"], body)
    assert event["type"] == kind and event["batch_id"] == batch["id"]
    assert event["occurred_at"] == "2026-06-01T01:00:00+00:00"  # Beijing time stored as UTC
    assert event["place"] == "华溪村" and event["corrects_id"] is None
    for key, value in DETAILS[kind].items():
        assert event["details"][key] == value, key
    assert world.get(HUANING, f"/api/v1/events/{event['id']}") == event


def test_time_without_offset_is_beijing_time(world: World) -> None:
    batch = world.new_batch()
    event = world.new_event(
        HUANING, batch["id"], event_body("care", occurred_at="2026-06-01T08:00:00")
    )
    assert event["occurred_at"] == "2026-06-01T00:00:00+00:00"


def test_history_is_listed_in_time_order(world: World) -> None:
    batch = world.new_batch()
    late = world.new_event(HUANING, batch["id"], event_body("harvest", "2026-10-01T08:00:00+08:00"))
    early = world.new_event(HUANING, batch["id"], event_body("sowing", "2026-03-01T08:00:00+08:00"))
    listed = world.get(HUANING, _events_url(batch["id"]))
    assert [e["id"] for e in listed] == [early["id"], late["id"]]


def test_demo_history_is_complete(world: World) -> None:
    events = world.get(HUANING, _events_url(world.ids["batch_id"]))
    kinds = [e["type"] for e in events]
    assert kinds.count("fertilizing") == 2 and kinds.count("pesticide") == 2
    for kind in ("inspection", "harvest", "processing", "packing", "shipping"):
        assert kind in kinds, kind
    pesticides = [e["details"] for e in events if e["type"] == "pesticide"]
    assert all(p["registration_no"].startswith("PD") and p["phi_days"] > 0 for p in pesticides)


# -- pre-harvest interval ----------------------------------------------------------------


def test_demo_batch_is_not_flagged(world: World) -> None:
    batch = _batch(world, world.ids["batch_id"])
    assert batch["flags"] == [] and batch["phi_findings"] == []


def test_harvest_inside_the_interval_flags_the_batch(world: World) -> None:
    batch = world.new_batch()
    spray = world.new_event(
        HUANING, batch["id"], event_body("pesticide", "2026-06-01T09:00:00+08:00", phi_days=14)
    )
    assert _batch(world, batch["id"])["flags"] == []  # nothing harvested yet
    world.new_event(HUANING, batch["id"], event_body("harvest", "2026-06-10T09:00:00+08:00"))

    flagged = _batch(world, batch["id"])
    assert flagged["flags"] == [PHI_FLAG]
    [finding] = flagged["phi_findings"]
    assert finding["pesticide_event_id"] == spray["id"]
    assert finding["product_name"] == DETAILS["pesticide"]["product_name"]
    assert finding["phi_days"] == 14 and finding["days_short"] == 5
    assert finding["applied_at"].startswith("2026-06-01T01:00")
    assert finding["harvested_at"].startswith("2026-06-10T01:00")
    listed = {b["id"]: b for b in world.get(HUANING, "/api/v1/batches")}
    assert listed[batch["id"]]["flags"] == [PHI_FLAG]
    assert listed[world.ids["batch_id"]]["flags"] == []


def test_harvest_exactly_when_the_interval_ends_is_fine(world: World) -> None:
    batch = world.new_batch()
    world.new_event(
        HUANING, batch["id"], event_body("pesticide", "2026-06-01T09:00:00+08:00", phi_days=14)
    )
    world.new_event(HUANING, batch["id"], event_body("harvest", "2026-06-15T09:00:00+08:00"))
    assert _batch(world, batch["id"])["flags"] == []
    world.new_event(HUANING, batch["id"], event_body("harvest", "2026-06-15T08:59:00+08:00"))
    assert _batch(world, batch["id"])["flags"] == [PHI_FLAG]  # one minute early


def test_spraying_after_harvest_does_not_flag_that_harvest(world: World) -> None:
    batch = world.new_batch()
    world.new_event(HUANING, batch["id"], event_body("harvest", "2026-06-10T09:00:00+08:00"))
    world.new_event(HUANING, batch["id"], event_body("pesticide", "2026-06-11T09:00:00+08:00"))
    assert _batch(world, batch["id"])["flags"] == []


def test_the_latest_spray_with_the_longest_interval_decides(world: World) -> None:
    batch = world.new_batch()
    world.new_event(
        HUANING, batch["id"], event_body("pesticide", "2026-05-01T09:00:00+08:00", phi_days=7)
    )
    late = world.new_event(
        HUANING, batch["id"], event_body("pesticide", "2026-05-20T09:00:00+08:00", phi_days=21)
    )
    world.new_event(HUANING, batch["id"], event_body("harvest", "2026-06-01T09:00:00+08:00"))
    findings = _batch(world, batch["id"])["phi_findings"]
    assert [f["pesticide_event_id"] for f in findings] == [late["id"]]


def test_correcting_the_spray_date_earlier_clears_the_flag(world: World) -> None:
    batch = world.new_batch()
    spray = world.new_event(
        HUANING, batch["id"], event_body("pesticide", "2026-06-01T09:00:00+08:00", phi_days=14)
    )
    world.new_event(HUANING, batch["id"], event_body("harvest", "2026-06-10T09:00:00+08:00"))
    world.set_labelled(batch["id"])
    assert _batch(world, batch["id"])["flags"] == [PHI_FLAG]

    correction = {
        **event_body("pesticide", "2026-05-20T09:00:00+08:00", phi_days=14),
        "corrects_id": spray["id"],
        "correction_reason": "喷药日期登记错误，以植保记录本为准",
    }
    r = _post(world, batch["id"], correction)
    assert r.status_code == 201, r.get_json()
    cleared = _batch(world, batch["id"])
    assert cleared["flags"] == [] and cleared["phi_findings"] == []


def test_harvest_date_alone_counts_and_changing_it_refreshes_the_flag(world: World) -> None:
    batch = world.new_batch(harvest_date="2026-06-10")
    world.new_event(
        HUANING, batch["id"], event_body("pesticide", "2026-06-01T09:00:00+08:00", phi_days=14)
    )
    assert _batch(world, batch["id"])["flags"] == [PHI_FLAG]
    r = world.client.patch(
        f"/api/v1/batches/{batch['id']}",
        json={"harvest_date": "2026-07-01"},
        headers=world.headers(HUANING),
    )
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["flags"] == []
    assert _batch(world, batch["id"])["flags"] == []


def test_editing_before_labelling_updates_the_flag(world: World) -> None:
    batch = world.new_batch()
    spray = world.new_event(
        HUANING, batch["id"], event_body("pesticide", "2026-06-01T09:00:00+08:00", phi_days=14)
    )
    world.new_event(HUANING, batch["id"], event_body("harvest", "2026-06-30T09:00:00+08:00"))
    assert _batch(world, batch["id"])["flags"] == []
    details = {**DETAILS["pesticide"], "phi_days": 45}
    assert _patch(world, spray["id"], {"details": details}).status_code == 200
    assert _batch(world, batch["id"])["flags"] == [PHI_FLAG]
    assert _delete(world, spray["id"]).status_code == 204
    assert _batch(world, batch["id"])["flags"] == []


# -- corrections, not edits ----------------------------------------------------------------


@pytest.fixture
def labelled(world: World) -> dict[str, Any]:
    """A fresh batch with one fertilizer record, then labelled."""
    batch = world.new_batch()
    event = world.new_event(HUANING, batch["id"], event_body("fertilizing", amount="50"))
    world.set_labelled(batch["id"])
    return {"batch": batch, "event": event}


def test_before_labelling_events_can_be_edited_and_deleted(world: World) -> None:
    batch = world.new_batch()
    event = world.new_event(HUANING, batch["id"], event_body("care"))
    r = _patch(world, event["id"], {"note": "补充说明", "place": "3号地块"})
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["note"] == "补充说明" and r.get_json()["place"] == "3号地块"
    assert _delete(world, event["id"]).status_code == 204
    assert world.get(HUANING, _events_url(batch["id"])) == []


@pytest.mark.parametrize(
    "method,body",
    [("PATCH", {"note": "改写"}), ("PATCH", {"details": DETAILS["fertilizing"]}), ("DELETE", None)],
    ids=["patch-note", "patch-details", "delete"],
)
def test_after_labelling_edits_are_refused_with_409(
    world: World, labelled: dict[str, Any], method: str, body: Any
) -> None:
    event = labelled["event"]
    before = world.counts()
    r = world.client.open(
        f"/api/v1/events/{event['id']}", method=method, json=body, headers=world.headers(HUANING)
    )
    problem = assert_problem(r, 409)
    assert "correction" in problem["detail"] and "corrects_id" in problem["detail"]
    assert world.counts() == before
    assert world.get(HUANING, f"/api/v1/events/{event['id']}") == {**event}


def test_a_correction_keeps_both_records_visible(world: World, labelled: dict[str, Any]) -> None:
    old = labelled["event"]
    body = {
        **event_body("fertilizing", amount="80"),
        "corrects_id": old["id"],
        "correction_reason": "称重记录有误",
    }
    r = _post(world, labelled["batch"]["id"], body)
    assert r.status_code == 201, r.get_json()
    new = r.get_json()
    assert new["corrects_id"] == old["id"] and new["correction_reason"] == "称重记录有误"
    assert new["details"]["amount"] == "80"

    listed = {e["id"]: e for e in world.get(HUANING, _events_url(labelled["batch"]["id"]))}
    assert set(listed) == {old["id"], new["id"]}
    assert listed[old["id"]]["corrected_by_id"] == new["id"]
    assert listed[old["id"]]["details"]["amount"] == "50"  # the original stays as it was
    assert listed[new["id"]]["corrected_by_id"] is None
    single = world.get(HUANING, f"/api/v1/events/{old['id']}")
    assert single["corrected_by_id"] == new["id"]


def test_a_corrected_event_is_corrected_once(world: World, labelled: dict[str, Any]) -> None:
    old = labelled["event"]
    first = {**event_body("fertilizing"), "corrects_id": old["id"], "correction_reason": "一"}
    newer = _post(world, labelled["batch"]["id"], first).get_json()
    before = world.counts()
    second = {**first, "correction_reason": "二"}
    r = _post(world, labelled["batch"]["id"], second)
    assert_problem(r, 422, "corrects_id")
    assert world.counts() == before
    # Correcting the correction is the way to change it again.
    third = {**first, "corrects_id": newer["id"], "correction_reason": "三"}
    assert _post(world, labelled["batch"]["id"], third).status_code == 201


@pytest.mark.parametrize("reason", [None, "", "   "], ids=["none", "empty", "blank"])
def test_a_correction_needs_a_reason(
    world: World, labelled: dict[str, Any], reason: str | None
) -> None:
    body: dict[str, Any] = {**event_body("fertilizing"), "corrects_id": labelled["event"]["id"]}
    if reason is not None:
        body["correction_reason"] = reason
    before = world.counts()
    assert_problem(_post(world, labelled["batch"]["id"], body), 422, "correction_reason")
    assert world.counts() == before


def test_a_reason_needs_a_corrected_event(world: World, labelled: dict[str, Any]) -> None:
    body = {**event_body("fertilizing"), "correction_reason": "无对象"}
    assert_problem(_post(world, labelled["batch"]["id"], body), 422, "corrects_id")


def test_a_correction_keeps_the_type(world: World, labelled: dict[str, Any]) -> None:
    body = {**event_body("care"), "corrects_id": labelled["event"]["id"], "correction_reason": "x"}
    assert_problem(_post(world, labelled["batch"]["id"], body), 422, "type")


def test_a_correction_is_validated_like_any_event(world: World, labelled: dict[str, Any]) -> None:
    body = {
        **event_body("fertilizing", amount="-3"),
        "corrects_id": labelled["event"]["id"],
        "correction_reason": "x",
    }
    assert_problem(_post(world, labelled["batch"]["id"], body), 422, "details.amount")


def test_new_events_can_still_be_added_after_labelling(
    world: World, labelled: dict[str, Any]
) -> None:
    r = _post(world, labelled["batch"]["id"], event_body("shipping"))
    assert r.status_code == 201


def test_after_labelling_the_batch_identity_is_locked(
    world: World, labelled: dict[str, Any]
) -> None:
    url = f"/api/v1/batches/{labelled['batch']['id']}"
    headers = world.headers(HUANING)
    r = world.client.patch(
        url, json={"batch_no": "NEW-NO", "harvest_date": "2026-01-01"}, headers=headers
    )
    assert_problem(r, 409, "batch_no", "harvest_date")
    r = world.client.patch(url, json={"grade": "二级", "status": "sealed"}, headers=headers)
    assert r.status_code == 200 and r.get_json()["labelled"] is True


def test_a_correction_of_an_event_that_has_a_correction_cannot_be_deleted(world: World) -> None:
    batch = world.new_batch()
    event = world.new_event(HUANING, batch["id"], event_body("care"))
    fix = {**event_body("care"), "corrects_id": event["id"], "correction_reason": "笔误"}
    assert _post(world, batch["id"], fix).status_code == 201
    assert_problem(_delete(world, event["id"]), 409)


def test_recalled_batch_history_is_closed(world: World) -> None:
    from trace.models import Batch

    batch = world.new_batch()
    with world.db() as s:
        row = s.get(Batch, batch["id"])
        assert row is not None
        row.status = "recalled"
        s.commit()
    assert_problem(_post(world, batch["id"], event_body("care")), 409)
