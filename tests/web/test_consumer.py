"""The consumer's phone page: verdict first, every published section, nothing unpublished,
case-insensitive path, languages, page weight, counterfeit page shape, media with Range."""

from __future__ import annotations

import io
import re
from html.parser import HTMLParser
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from tests.web.conftest import PHONE_UA, World
from trace.extensions import storage
from trace.models import Batch
from trace.models.enums import Role
from trace.services import media
from trace.services.actors import Actor

PAGE_BUDGET = 50 * 1024


def _page(client: FlaskClient, path: str, **headers: str) -> str:
    r = client.get(path, headers=headers)
    assert r.status_code == 200
    assert r.mimetype == "text/html"
    return r.get_data(as_text=True)


def _ids(html: str) -> set[str]:
    return set(re.findall(r'\sid="([^"]+)"', html))


def test_genuine_page_shows_verdict_first_and_every_section(
    client: FlaskClient, world: World
) -> None:
    html = _page(client, "/q/" + world.code(0), **{"User-Agent": PHONE_UA})
    assert html.index('id="verdict"') < html.index('id="product"')
    assert 'data-verdict="genuine"' in html and "<h1>正品</h1>" in html
    assert "首次查询" in html
    ids = _ids(html)
    for section in ("product", "producer", "origin", "timeline", "inspections", "certificates"):
        assert section in ids, section
    for text in (
        "华宁柑桔",  # product
        "HN-GJ-2026-11-001",  # batch
        "华宁县盘溪柑桔专业合作社",  # producer
        "华宁柑桔合作社",  # its WeChat official account
        "云南省",
        "玉溪市",
        "华宁县",
        "盘溪镇",
        "华溪村",  # origin
        "2026-11-02",
        "2026-11-04",  # harvest, pack
        "一级",  # grade
        "1.8%阿维菌素乳油",
        "安全间隔期 14 天",
        "✓ 采收遵守了安全间隔期",  # pesticide with its PHI
        "腐熟羊粪有机肥",  # fertilizer
        "疏花疏果",  # care
        "合格",
        "华宁县农产品质量安全检测站",  # inspection
        "承诺达标合格证",
        "HN530424-2026-001387",  # certificate
        "清洗、分级",  # processing
        "昆明金马正昌农产品批发市场",  # shipping
    ):
        assert text in html, text
    assert "locate-btn" in html  # the opt-in location button
    assert world.scans()[-1].channel == "phone" and world.scans()[-1].ua_class == "wechat"


def test_path_is_case_insensitive(client: FlaskClient, world: World) -> None:
    code = world.code(1)
    for path in ("/Q/" + code.upper(), "/q/" + code.lower(), "/q/" + code.title()):
        assert 'data-verdict="genuine"' in _page(client, path)
    assert world.scan_count() == 3


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script" and a.get("src"):
            self.urls.append(str(a["src"]))
        if tag == "link" and a.get("rel") == "stylesheet" and a.get("href"):
            self.urls.append(str(a["href"]))


def test_page_weight_under_50_kb_before_media(
    app: Flask, client: FlaskClient, world: World
) -> None:
    _add_media(app, world)
    for lang in ("zh", "en"):
        r = client.get(f"/q/{world.code(2)}?lang={lang}")
        html = r.get_data()
        parser = _Assets()
        parser.feed(html.decode())
        total = len(html) + sum(len(client.get(u).get_data()) for u in parser.urls)
        assert total <= PAGE_BUDGET, (lang, total)
        assert b"<video" in html and b"<img" in html  # media counted by reference only


def test_english_by_accept_language_and_by_toggle(client: FlaskClient, world: World) -> None:
    code = world.code(3)
    en = _page(client, "/q/" + code, **{"Accept-Language": "en-US,en;q=0.9"})
    assert "<h1>Genuine</h1>" in en and "First scan" in en and "Production record" in en
    assert "华宁柑桔" in en  # the producer's own words stay as entered
    zh = _page(client, "/q/" + code, **{"Accept-Language": "zh-CN,zh;q=0.9"})
    assert "<h1>正品</h1>" in zh and "已被查询 2 次" in zh
    # The visible toggle carries the scan's token: switching language is not another scan.
    toggle = re.search(r'id="lang-switch" href="([^"]+)"', zh)
    assert toggle is not None and "lang=en" in toggle.group(1)
    switched = _page(client, "/q/" + code + toggle.group(1).replace("&amp;", "&"))
    assert "<h1>Genuine</h1>" in switched and "Scanned 2 times" in switched
    assert world.scan_count() == 2
    assert client.get_cookie("lang") is not None and client.get_cookie("lang").value == "en"


def test_counterfeit_page_has_one_shape_whatever_was_wrong(
    client: FlaskClient, world: World
) -> None:
    code = world.code(4)
    wrong = [
        code[:-1] + ("A" if code[-1] != "A" else "E"),  # last character
        code[:5] + code[6] + code[5] + code[7:],  # two swapped
        code[:-3],  # too short
        "Z" + code[1:],  # unknown key version
        "hello",
    ]
    pages = set()
    for w in wrong:
        html = _page(client, "/q/" + w)
        assert 'data-verdict="counterfeit"' in html and "疑似假冒" in html and "12315" in html
        assert "华宁" not in html and 'id="product"' not in html
        pages.add(re.sub(r'(data-t="|s=)[^"&]+', r"\1TOKEN", html))
    assert len(pages) == 1
    assert {s.verdict for s in world.scans()} == {"counterfeit"}


def test_template_hides_unpublished_sections(client: FlaskClient, world: World) -> None:
    run = world.issue(world.demo["batch_id"], 5, template={"public": ["origin", "inspections"]})
    code = world.code(0, run)
    body = client.get("/api/v1/resolve/" + code).json
    assert set(body) >= {"product", "origin", "inspections"}
    for hidden in ("producer", "dates", "grade", "timeline", "certificates", "media"):
        assert hidden not in body, hidden
    html = _page(client, "/q/" + code)
    ids = _ids(html)
    assert {"product", "origin", "inspections"} <= ids
    assert not ids & {"producer", "timeline", "certificates", "media", "harvest-date", "grade"}
    for secret in (
        "华宁柑桔合作社",
        "阿维菌素",
        "腐熟羊粪",
        "承诺达标合格证",
        "昆明金马",
        "2026-11-02",
    ):
        assert secret not in html, secret
    # Nothing public at all: only the product and its batch.
    bare = world.issue(world.demo["batch_id"], 5, template={"public": []})
    body = client.get("/api/v1/resolve/" + world.code(0, bare)).json
    assert set(body) == {
        "verdict",
        "scan",
        "suspicious_reason",
        "recall",
        "voided",
        "level",
        "product",
    }


MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(range(256)) * 40


def _png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 36), (230, 140, 30)).save(out, format="PNG")
    return out.getvalue()


PNG = _png()


def _add_media(app: Flask, world: World) -> dict[str, int]:
    ids = {}
    with app.app_context(), world.session() as s:
        batch = s.get(Batch, world.demo["batch_id"])
        assert batch is not None
        actor = Actor(user_id=None, role=Role.ENTERPRISE_ADMIN, enterprise_id=batch.enterprise_id)
        for name, data, public in (
            ("photo.png", PNG, True),
            ("harvest.mp4", MP4, True),
            ("private.png", PNG + b"x", False),
        ):
            a = media.add_attachment(
                s,
                storage(),
                actor,
                batch.id,
                io.BytesIO(data),
                name,
                10**6,
                caption=name,
                is_public=public,
            )
            ids[name] = a.id
        s.commit()
    return ids


def test_media_served_with_range_only_when_published(
    app: Flask, client: FlaskClient, world: World
) -> None:
    ids = _add_media(app, world)
    code = world.code(5)
    html = _page(client, "/q/" + code)
    video = f"/q/{code}/media/{ids['harvest.mp4']}"
    assert f'poster="/q/{code}/media/{ids["photo.png"]}"' in html and video in html
    assert f"/media/{ids['private.png']}" not in html

    full = client.get(video)
    assert full.status_code == 200 and full.get_data() == MP4
    assert full.headers["Accept-Ranges"] == "bytes" and full.mimetype == "video/mp4"
    part = client.get(video, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.get_data() == MP4[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(MP4)}"
    tail = client.get(video.lower().replace("/media/", "/media/"), headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.get_data() == MP4[-10:]

    def status(path: str) -> int:
        return client.get(path).status_code

    assert status(f"/q/{code}/media/{ids['private.png']}") == 404  # not public
    forged = code[:-1] + ("A" if code[-1] != "A" else "E")
    assert status(f"/q/{forged}/media/{ids['photo.png']}") == 404  # forged code
    other = world.code(0, world.tomato_run)
    assert status(f"/q/{other}/media/{ids['photo.png']}") == 404  # another batch's code
    no_media = world.issue(world.demo["batch_id"], 3, template={"public": ["origin"]})
    assert status(f"/q/{world.code(0, no_media)}/media/{ids['photo.png']}") == 404
    assert status(f"/q/{code}/media/{2**31}") == 404  # beyond any id: no query, no 500
    assert world.scan_count() == 1  # media requests are not scans


def test_api_lists_media(app: Flask, client: FlaskClient, world: World) -> None:
    ids = _add_media(app, world)
    body: dict[str, Any] = client.get("/api/v1/resolve/" + world.code(6)).json
    kinds = {m["id"]: m["kind"] for m in body["media"]}
    assert kinds == {ids["photo.png"]: "image", ids["harvest.mp4"]: "video"}
    video = next(m for m in body["media"] if m["kind"] == "video")
    assert video["poster_id"] == ids["photo.png"]


def test_counterfeit_pages_of_odd_text_answer_200(client: FlaskClient, world: World) -> None:
    for typed in ("%E4%B8%AD%E6%96%87", "abc.def", "a..b", "%F0%9F%8D%8A" * 3):
        r = client.get("/q/" + typed)
        assert r.status_code == 200, typed
        assert 'data-verdict="counterfeit"' in r.get_data(as_text=True)


def test_scan_tokens_round_trip_and_refuse_what_is_not_theirs(app: Flask, world: World) -> None:
    from datetime import UTC, datetime, timedelta

    from trace.services.scanlog import ScanRecord
    from trace.web import consumer

    code = world.code(5)
    record = ScanRecord(id=987654321, scanned_at=datetime.now(UTC).replace(microsecond=345678))
    with app.test_request_context():
        token = consumer.scan_token(record, code.lower())
        assert consumer.read_token(token, code) == record  # exact to the microsecond
        assert consumer.read_token(token, world.code(6)) is None  # another label's page
        # (Not the signature's last character: base64 leaves some of its bits unused.)
        tampered = token[:-5] + ("A" if token[-5] != "A" else "B") + token[-4:]
        for bad in (tampered, token.replace(".", ".1", 1), "", "x.y.z", "ü" * 9):
            assert consumer.read_token(bad, code) is None, bad
        # Whatever was typed as the code (a counterfeit page's may hold dots or Chinese).
        for typed in ("中文标签", "abc.def", "A" * 27):
            odd = consumer.scan_token(record, typed)
            assert odd.isascii() and consumer.read_token(odd, typed) == record
            assert consumer.read_token(odd, code) is None
        # Tokens end with the scan's locate window.
        at = record.scanned_at
        within = at + timedelta(seconds=consumer.TOKEN_MAX_AGE - 5)
        assert consumer.read_token(token, code, now=within) == record
        later = at + timedelta(seconds=consumer.TOKEN_MAX_AGE + 5)
        assert consumer.read_token(token, code, now=later) is None
        assert consumer.read_token(token, code, now=at - timedelta(minutes=5)) is None


def test_verdict_words_are_escaped_on_the_page() -> None:
    """A recall notice is a regulator's or producer's free text: it must reach the page as
    text, never as markup (consumer.verdict_body builds this HTML without a template)."""
    from trace.web.consumer import verdict_body

    html = verdict_body(
        {
            "title": "产品已召回 <b>",
            "lines": ["召回 & 退货", '"quoted"'],
            "notice": "<script>alert(1)</script>",
            "advice": "a < b",
        }
    )
    assert html == (
        "<h1>产品已召回 &lt;b&gt;</h1>"
        '<p class="line">召回 &amp; 退货</p><p class="line">&#34;quoted&#34;</p>'
        '<blockquote id="recall-notice">&lt;script&gt;alert(1)&lt;/script&gt;</blockquote>'
        '<p class="advice">a &lt; b</p>'
    )
    assert verdict_body({"title": "正品", "lines": [], "advice": ""}) == "<h1>正品</h1>"
