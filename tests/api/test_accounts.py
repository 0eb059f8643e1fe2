"""Accounts: password sign-in gives a token once, tokens are hashed at rest and revocable,
and who may create which accounts and enterprises."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from tests.factories import (
    BACKENDS,
    HUANING,
    HUANING_REG,
    SONGMING,
    World,
    assert_problem,
    build_world,
    unique,
)
from trace.models import ApiToken, AuditEntry, User
from trace.services.demo import DEMO_PASSWORD
from trace.validation import uscc_check_char


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    yield from build_world(request.param, tmp_path_factory.mktemp("accounts"))


def _login(world: World, username: str, password: str = DEMO_PASSWORD, **extra: Any) -> Any:
    return world.client.post(
        "/api/v1/auth/token", json={"username": username, "password": password, **extra}
    )


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _all_stored_text(world: World) -> str:
    """Every value of every column of api_tokens, users and audit_entries, as one string."""
    parts: list[str] = []
    with world.db() as s:
        for model in (ApiToken, User, AuditEntry):
            for row in s.scalars(select(model)):
                parts.extend(str(getattr(row, c.key)) for c in model.__table__.columns)
    return "\n".join(parts)


def test_password_login_returns_a_working_token_once(world: World) -> None:
    r = _login(world, HUANING, token_name="手机")
    assert r.status_code == 201, r.get_json()
    issued = r.get_json()
    token = issued["token"]
    assert token.startswith("trc_") and len(token) > 40
    assert issued["name"] == "手机" and token.startswith(issued["prefix"])

    me = world.client.get("/api/v1/me", headers=_bearer(token))
    assert me.status_code == 200 and me.get_json()["username"] == HUANING
    assert "password" not in me.get_json() and "password_hash" not in me.get_json()

    listed = world.client.get("/api/v1/tokens", headers=_bearer(token)).get_json()
    assert issued["id"] in {t["id"] for t in listed}
    assert token not in str(listed) and all("token" not in t for t in listed)

    again = _login(world, HUANING).get_json()["token"]
    assert again != token


def test_tokens_and_passwords_are_not_stored_in_plain(world: World) -> None:
    token = _login(world, SONGMING).get_json()["token"]
    stored = _all_stored_text(world)
    assert token not in stored
    assert token[10:30] not in stored  # not even the secret part beyond the shown prefix
    assert DEMO_PASSWORD not in stored
    for demo_token in world.ids["tokens"].values():
        assert demo_token not in stored


@pytest.mark.parametrize(
    "username,password",
    [(HUANING, "wrong-password"), ("nobody-here", DEMO_PASSWORD), (HUANING, "")],
)
def test_wrong_credentials_are_401_without_telling_which(
    world: World, username: str, password: str
) -> None:
    before = world.counts()
    r = _login(world, username, password)
    problem = assert_problem(r, 401)
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert problem["detail"] == "Wrong username or password."
    assert world.counts() == before


def test_revoked_token_is_refused(world: World) -> None:
    issued = _login(world, HUANING).get_json()
    headers = _bearer(issued["token"])
    assert world.client.get("/api/v1/batches", headers=headers).status_code == 200
    r = world.client.delete(f"/api/v1/tokens/{issued['id']}", headers=headers)
    assert r.status_code == 204
    r = world.client.get("/api/v1/batches", headers=headers)
    assert_problem(r, 401)
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    # Listed as revoked to its owner (through another token).
    listed = world.client.get("/api/v1/tokens", headers=world.headers(HUANING)).get_json()
    assert [t["revoked_at"] for t in listed if t["id"] == issued["id"]] != [None]


def test_one_cannot_revoke_anothers_token(world: World) -> None:
    issued = _login(world, SONGMING).get_json()
    r = world.client.delete(f"/api/v1/tokens/{issued['id']}", headers=world.headers(HUANING))
    assert_problem(r, 404)
    assert world.client.get("/api/v1/me", headers=_bearer(issued["token"])).status_code == 200


@pytest.mark.parametrize(
    "header",
    ["Bearer trc_not-a-real-token", "Bearer ", "Basic aHVhbmluZzpwdw==", "trc_no_scheme"],
)
def test_bad_credentials_are_401_problems(world: World, header: str) -> None:
    r = world.client.get("/api/v1/batches", headers={"Authorization": header})
    assert_problem(r, 401)
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_token_created_by_api_is_shown_once(world: World) -> None:
    r = world.client.post("/api/v1/tokens", json={"name": "打印机"}, headers=world.headers(HUANING))
    assert r.status_code == 201
    token = r.get_json()["token"]
    assert world.client.get("/api/v1/me", headers=_bearer(token)).get_json()["username"] == HUANING
    assert token not in _all_stored_text(world)


# -- users ------------------------------------------------------------------------------


def _user_body(**overrides: Any) -> dict[str, Any]:
    return {
        "username": unique("op"),
        "password": "operator-pass-1",
        "display_name": "分拣员",
        "role": "enterprise_operator",
        **overrides,
    }


def test_enterprise_admin_creates_operators_in_own_enterprise(world: World) -> None:
    body = _user_body()
    r = world.client.post("/api/v1/users", json=body, headers=world.headers(HUANING))
    assert r.status_code == 201, r.get_json()
    user = r.get_json()
    assert user["role"] == "enterprise_operator"
    assert user["enterprise_id"] == world.ids["enterprise_ids"][0]
    assert "password" not in user

    # The operator signs in, records production data, and sees only its enterprise.
    token = _login(world, body["username"], body["password"]).get_json()["token"]
    batches = world.client.get("/api/v1/batches", headers=_bearer(token)).get_json()
    assert {b["enterprise_id"] for b in batches} == {world.ids["enterprise_ids"][0]}
    product = world.client.post("/api/v1/products", json={"name": "柑"}, headers=_bearer(token))
    assert product.status_code == 201
    listed = world.client.get("/api/v1/users", headers=world.headers(HUANING)).get_json()
    assert {u["enterprise_id"] for u in listed} == {world.ids["enterprise_ids"][0]}
    assert body["username"] in {u["username"] for u in listed}


def test_enterprise_admin_cannot_create_in_another_enterprise(world: World) -> None:
    before = world.counts()
    body = _user_body(enterprise_id=world.ids["enterprise_ids"][1])
    r = world.client.post("/api/v1/users", json=body, headers=world.headers(HUANING))
    assert_problem(r, 403)
    assert world.counts() == before


@pytest.mark.parametrize(
    "role,extra",
    [("enterprise_admin", {}), ("regulator", {"region_prefix": "5304"}), ("platform_admin", {})],
)
def test_enterprise_admin_creates_no_other_roles(
    world: World, role: str, extra: dict[str, Any]
) -> None:
    before = world.counts()
    r = world.client.post(
        "/api/v1/users", json=_user_body(role=role, **extra), headers=world.headers(HUANING)
    )
    assert_problem(r, 403)
    assert world.counts() == before


def test_operator_and_regulator_create_no_users(world: World) -> None:
    body = _user_body()
    world.client.post("/api/v1/users", json=body, headers=world.headers(HUANING))
    operator = _login(world, body["username"], body["password"]).get_json()["token"]
    before = world.counts()
    for headers in (_bearer(operator), world.headers(HUANING_REG)):
        r = world.client.post("/api/v1/users", json=_user_body(), headers=headers)
        assert_problem(r, 403)
    assert world.counts() == before
    # Nor does an operator change the enterprise's master data.
    r = world.client.patch(
        f"/api/v1/enterprises/{world.ids['enterprise_ids'][0]}",
        json={"contact_name": "x"},
        headers=_bearer(operator),
    )
    assert_problem(r, 403)


def test_platform_admin_creates_a_regulator(world: World) -> None:
    body = _user_body(role="regulator", region_prefix="5304")
    r = world.client.post("/api/v1/users", json=body, headers=world.headers("admin"))
    assert r.status_code == 201 and r.get_json()["region_prefix"] == "5304"
    token = _login(world, body["username"], body["password"]).get_json()["token"]
    # Yuxi city (5304) contains Huaning county but not Songming (Kunming).
    enterprises = world.client.get("/api/v1/enterprises", headers=_bearer(token)).get_json()
    assert [e["region_code"] for e in enterprises] == ["530424"]


@pytest.mark.parametrize(
    "overrides,field",
    [
        ({"region_prefix": "53042"}, "region_prefix"),
        ({"region_prefix": None}, "region_prefix"),
        ({"password": "short"}, "password"),
        ({"username": "a b"}, "username"),
        ({"role": "superuser"}, "role"),
    ],
)
def test_bad_user_input_is_named(world: World, overrides: dict[str, Any], field: str) -> None:
    before = world.counts()
    body = {**_user_body(role="regulator", region_prefix="5304"), **overrides}
    r = world.client.post("/api/v1/users", json=body, headers=world.headers("admin"))
    assert_problem(r, 422, field)
    assert world.counts() == before


def test_usernames_are_unique(world: World) -> None:
    r = world.client.post(
        "/api/v1/users", json=_user_body(username=HUANING), headers=world.headers("admin")
    )
    assert_problem(r, 422, "username")


# -- enterprises ------------------------------------------------------------------------


def test_platform_admin_registers_an_enterprise(world: World) -> None:
    body17 = "93530424MA6K9XY01"
    uscc = body17 + uscc_check_char(body17)
    body = {"uscc": uscc, "name": "华宁县青龙镇蔬菜合作社", "region_code": "530424"}
    r = world.client.post("/api/v1/enterprises", json=body, headers=world.headers("admin"))
    assert r.status_code == 201, r.get_json()
    assert r.get_json()["status"] == "admitted"
    before = world.counts()
    again = world.client.post("/api/v1/enterprises", json=body, headers=world.headers("admin"))
    assert_problem(again, 409, "uscc")
    by_admin = world.client.post(
        "/api/v1/enterprises", json={**body, "uscc": uscc}, headers=world.headers(HUANING)
    )
    assert_problem(by_admin, 403)
    assert world.counts() == before
    # The county regulator now sees it; the other county's does not.
    assert uscc in {e["uscc"] for e in world.get(HUANING_REG, "/api/v1/enterprises")}
    assert uscc not in {e["uscc"] for e in world.get("songming-regulator", "/api/v1/enterprises")}


def test_enterprise_admin_edits_own_contact_but_not_status(world: World) -> None:
    url = f"/api/v1/enterprises/{world.ids['enterprise_ids'][0]}"
    r = world.client.patch(
        url, json={"contact_phone": "0877-5019999"}, headers=world.headers(HUANING)
    )
    assert r.status_code == 200 and r.get_json()["contact_phone"] == "0877-5019999"
    r = world.client.patch(url, json={"status": "suspended"}, headers=world.headers(HUANING))
    assert_problem(r, 403)
    other = f"/api/v1/enterprises/{world.ids['enterprise_ids'][1]}"
    r = world.client.patch(other, json={"contact_phone": "1"}, headers=world.headers(HUANING))
    assert_problem(r, 404)
    r = world.client.patch(url, json={"contact_phone": "1"}, headers=world.headers(HUANING_REG))
    assert_problem(r, 403)


@pytest.mark.real_password_hashing
def test_stored_passwords_use_a_memory_hard_hash() -> None:
    """The production hash (tests elsewhere use a cheap one for speed): scrypt, salted,
    checked by werkzeug; the password itself is nowhere in it."""
    from werkzeug.security import check_password_hash

    from trace.services.auth import hash_password

    stored = hash_password("demo-pass-2026")
    assert stored.startswith("scrypt:") and "demo-pass-2026" not in stored
    assert check_password_hash(stored, "demo-pass-2026")
    assert hash_password("demo-pass-2026") != stored  # salted
