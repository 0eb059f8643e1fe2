"""The consumer's phone page: ``GET /q/<code>`` (any case: QR payloads are upper case).

Server-rendered, no front-end framework, CSS and the little JavaScript inline: one request
on a slow rural link, tens of KB (tests/web/test_consumer.py holds it under 50 KB).

* Each page view is one scan (channel ``phone``). The language toggle and the location
  answer carry a signed token of that scan, so switching language does not count again.
* Opt-in location: a button asks the browser for its position and posts it to
  ``/q/<code>/location``; the scan gets the nearest county (services.scanlog.locate). With
  the scan log's write-behind buffer the scan is written first (see ``locate``).
* Media: ``/q/<code>/media/<id>`` serves a public photo or video of the code's batch when
  the code's run publishes "media", with HTTP Range (seeking in videos).
* The batch's sections are rendered once per (content, language), and the page around the
  verdict once per (content, language, verdict, token or not), cached with the content
  (services.resolve.ContentCache); per request only the verdict's words, the scan token
  and the code are filled in (``Shell``).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    get_template_attribute,
    render_template,
    request,
)
from markupsafe import Markup, escape
from sqlalchemy import select

from trace.api.attachments import send_attachment
from trace.api.scans import (
    SCAN_HEADERS,
    client_context,
    flush_scan_log,
    keyring,
    resolve_and_log,
    resolve_code,
    rules,
    scan_buffer,
    scan_context,
)
from trace.crypto import codes
from trace.crypto.keyring import Keyring
from trace.extensions import db, per_app
from trace.models import Attachment, LabelRun
from trace.models.enums import RunStatus, ScanChannel, Verdict
from trace.regions import lookup as regions
from trace.services import resolve as resolver
from trace.services import scanlog, templates
from trace.services.scope import is_storable_id
from trace.web import i18n
from trace.web.i18n import translate as _

bp = Blueprint("consumer", __name__)

#: Stand for the code (media URLs), the verdict's words and the scan token in cached
#: pages and fragments; replaced per request. NUL: nothing a template escapes or prints.
CODE_SLOT = "\x00CODE\x00"
VERDICT_SLOT = "\x00VERDICT\x00"
TOKEN_SLOT = "\x00TOKEN\x00"
#: per_app key of the shells of pages without content (counterfeit codes).
_SHELLS = "trace.consumer_shells"
#: A scan token (language toggle, location) is honoured this long after the scan.
TOKEN_MAX_AGE = int(scanlog.LOCATE_WINDOW.total_seconds())
#: A location for a scan younger than this that is not in the database yet waits for the
#: other workers' buffers once (see locate()).
LOCATE_RETRY_WITHIN = timedelta(seconds=5)

i18n.add_messages(
    {
        "q.title": {"zh": "扫码查询结果", "en": "Scan result"},
        "q.v.genuine": {"zh": "正品", "en": "Genuine"},
        "q.v.genuine.first": {
            "zh": "首次查询：这是该标签第一次被查询。",
            "en": "First scan: this label has never been scanned before.",
        },
        "q.v.genuine.repeat": {
            "zh": "已被查询 {n} 次，首次于 {date}{place}。",
            "en": "Scanned {n} times, first on {date}{place}.",
        },
        "q.v.place": {"zh": " 在{county}", "en": " in {county}"},
        "q.v.genuine.advice": {
            "zh": "如果之前不是您或家人扫过，请仔细核对下方的产品和批次信息。",
            "en": "If neither you nor your family scanned it before, check the product "
            "and batch details below carefully.",
        },
        "q.v.counterfeit": {"zh": "无法识别 · 疑似假冒", "en": "Unknown code · may be counterfeit"},
        "q.v.counterfeit.body": {
            "zh": "这个码不是本平台签发的溯源码，可能是假冒产品。",
            "en": "This code was not issued by this platform. The product may be counterfeit.",
        },
        "q.v.counterfeit.advice": {
            "zh": "请不要购买或食用；保留商品和购物凭证，拨打 12315 或向当地市场监管部门举报。",
            "en": "Do not buy or eat it. Keep the product and the receipt and report it "
            "(hotline 12315 or the local market regulator).",
        },
        "q.v.voided": {"zh": "标签已作废", "en": "Label voided"},
        "q.v.voided.body": {
            "zh": "这个标签已被生产者作废（例如印错或损坏），不应出现在出售的商品上。",
            "en": "The producer voided this label (e.g. misprinted or damaged); it should "
            "not be on a product for sale.",
        },
        "q.v.voided.advice": {
            "zh": "请向商家核实；如有疑问，拨打 12315。",
            "en": "Ask the seller about it; if in doubt, call 12315.",
        },
        "q.v.recalled": {"zh": "产品已召回", "en": "Product recalled"},
        "q.v.recalled.body": {
            "zh": "该批次产品已被召回（{level}级，{date}起）。召回公告：",
            "en": "This batch has been recalled (level {level}, since {date}). Notice:",
        },
        "q.v.recalled.advice": {
            "zh": "请立即停止食用和销售，按召回公告退货或退款。",
            "en": "Stop eating or selling it now; return it as the notice says.",
        },
        "q.v.suspicious": {
            "zh": "可疑 · 标签可能被复制",
            "en": "Suspicious · this label may have been copied",
        },
        "q.v.suspicious.count": {
            "zh": "该标签已被查询 {n} 次，远多于正常情况。",
            "en": "This label has been scanned {n} times, far more than usual.",
        },
        "q.v.suspicious.distance": {
            "zh": "该标签在很短时间内于相距很远的两地被查询。",
            "en": "This label was scanned in two places too far apart for the time between.",
        },
        "q.v.suspicious.advice": {
            "zh": "正品标签一般只被查询少数几次。请核对下方的产品、批次和产地是否与您手中的"
            "商品一致；如有疑问请保留商品，拨打 12315。",
            "en": "A genuine label is usually scanned only a few times. Check that the "
            "product, batch and origin below match what you hold; if in doubt keep it "
            "and call 12315.",
        },
        "q.locate.ask": {
            "zh": "帮助核验：分享我的大致位置",
            "en": "Help verify: share my approximate location",
        },
        "q.locate.why": {
            "zh": "只用于判断所在县，帮助发现假冒和被复制的标签。",
            "en": "Used only to find your county, to help detect counterfeit and copied labels.",
        },
        "q.locate.done": {"zh": "已记录所在地：", "en": "Location recorded: "},
        "q.locate.fail": {"zh": "未能获取位置。", "en": "Could not get your location."},
        "q.locate.warn": {
            "zh": "注意：该标签不久前在很远的地方被查询过，可能被复制。请仔细核对商品。",
            "en": "Warning: this label was scanned far away shortly before; it may have been "
            "copied. Check the product carefully.",
        },
        "q.s.product": {"zh": "产品信息", "en": "Product"},
        "q.s.producer": {"zh": "生产者", "en": "Producer"},
        "q.s.origin": {"zh": "产地", "en": "Origin"},
        "q.s.timeline": {"zh": "生产记录", "en": "Production record"},
        "q.s.inspections": {"zh": "检测报告", "en": "Inspections"},
        "q.s.certificates": {"zh": "认证证书", "en": "Certificates"},
        "q.s.media": {"zh": "图片与视频", "en": "Photos and videos"},
        "q.f.name": {"zh": "品名", "en": "Name"},
        "q.f.category": {"zh": "品类", "en": "Category"},
        "q.f.specification": {"zh": "规格", "en": "Specification"},
        "q.f.brand": {"zh": "品牌", "en": "Brand"},
        "q.f.batch_no": {"zh": "批次号", "en": "Batch"},
        "q.f.harvest_date": {"zh": "采收日期", "en": "Harvested"},
        "q.f.pack_date": {"zh": "包装日期", "en": "Packed"},
        "q.f.grade": {"zh": "等级", "en": "Grade"},
        "q.f.enterprise": {"zh": "企业", "en": "Enterprise"},
        "q.f.wechat": {"zh": "微信公众号", "en": "WeChat account"},
        "q.f.region": {"zh": "所在地", "en": "Located in"},
        "q.f.province": {"zh": "省", "en": "Province"},
        "q.f.city": {"zh": "市", "en": "City"},
        "q.f.county": {"zh": "县（区）", "en": "County"},
        "q.f.township": {"zh": "乡镇", "en": "Township"},
        "q.f.village": {"zh": "村", "en": "Village"},
        "q.f.site": {"zh": "基地", "en": "Production base"},
        "q.f.place": {"zh": "地点", "en": "Place"},
        "q.f.actor": {"zh": "操作人", "en": "By"},
        "q.f.note": {"zh": "备注", "en": "Note"},
        "q.f.correction": {"zh": "更正说明", "en": "Correction"},
        "q.f.lab": {"zh": "检测机构", "en": "Laboratory"},
        "q.f.inspector": {"zh": "检测员", "en": "Inspector"},
        "q.f.method": {"zh": "方法", "en": "Method"},
        "q.f.report_no": {"zh": "报告编号", "en": "Report no."},
        "q.f.number": {"zh": "证书编号", "en": "Number"},
        "q.f.issuer": {"zh": "发证机构", "en": "Issued by"},
        "q.f.valid": {"zh": "有效期", "en": "Valid"},
        "q.pass": {"zh": "合格", "en": "Passed"},
        "q.fail": {"zh": "不合格", "en": "Failed"},
        "q.cert.valid": {"zh": "有效", "en": "Valid"},
        "q.cert.expired": {"zh": "不在有效期", "en": "Not valid now"},
        "q.phi": {
            "zh": "安全间隔期 {days} 天，{date} 起可采收",
            "en": "Pre-harvest interval {days} days: harvest from {date}",
        },
        "q.phi.ok": {"zh": "✓ 采收遵守了安全间隔期", "en": "✓ Harvest respected the interval"},
        "q.phi.bad": {
            "zh": "✗ 采收早于安全间隔期 {n} 天",
            "en": "✗ Harvested {n} days before the interval ended",
        },
        "q.phi.pending": {"zh": "尚未采收", "en": "Not harvested yet"},
        "q.empty": {"zh": "暂无记录", "en": "No records yet"},
        "q.footer": {
            "zh": "本页由农产品质量安全追溯平台提供。举报电话 12315。",
            "en": "Provided by the agricultural product traceability platform. Hotline 12315.",
        },
        "q.video": {
            "zh": "您的浏览器无法播放此视频。",
            "en": "Your browser cannot play this video.",
        },
        "q.document": {"zh": "查看文件", "en": "Open document"},
        **{
            f"ev.{k}": v
            for k, v in {
                "sowing": {"zh": "播种", "en": "Sowing"},
                "fertilizing": {"zh": "施肥", "en": "Fertilizing"},
                "pesticide": {"zh": "施药", "en": "Pesticide"},
                "irrigation": {"zh": "灌溉", "en": "Irrigation"},
                "care": {"zh": "田间管理", "en": "Field care"},
                "harvest": {"zh": "采收", "en": "Harvest"},
                "inspection": {"zh": "检测", "en": "Inspection"},
                "certification": {"zh": "认证", "en": "Certification"},
                "processing": {"zh": "加工", "en": "Processing"},
                "packing": {"zh": "包装", "en": "Packing"},
                "shipping": {"zh": "发运", "en": "Shipping"},
                "receiving": {"zh": "收货", "en": "Receiving"},
                "retail": {"zh": "零售", "en": "Retail"},
            }.items()
        },
        **{
            f"d.{k}": v
            for k, v in {
                "product_name": {"zh": "农药名称", "en": "Pesticide"},
                "registration_no": {"zh": "登记证号", "en": "Registration no."},
                "active_ingredient": {"zh": "有效成分", "en": "Active ingredient"},
                "dose": {"zh": "用量", "en": "Dose"},
                "dilution": {"zh": "稀释倍数", "en": "Dilution"},
                "target": {"zh": "防治对象", "en": "Target"},
                "name": {"zh": "肥料", "en": "Fertilizer"},
                "amount": {"zh": "用量", "en": "Amount"},
                "kind": {"zh": "类型", "en": "Kind"},
                "variety": {"zh": "品种", "en": "Variety"},
                "seed_source": {"zh": "种苗来源", "en": "Seed source"},
                "method": {"zh": "方式", "en": "Method"},
                "water_m3": {"zh": "用水（立方米）", "en": "Water (m³)"},
                "operation": {"zh": "作业", "en": "Operation"},
                "description": {"zh": "说明", "en": "Description"},
                "quantity": {"zh": "数量", "en": "Quantity"},
                "process": {"zh": "工序", "en": "Process"},
                "grade": {"zh": "等级", "en": "Grade"},
                "package": {"zh": "包装", "en": "Package"},
                "units": {"zh": "件数", "en": "Units"},
                "destination": {"zh": "目的地", "en": "Destination"},
                "carrier": {"zh": "承运人", "en": "Carrier"},
                "receiver": {"zh": "收货方", "en": "Receiver"},
                "store": {"zh": "门店", "en": "Store"},
                "area_mu": {"zh": "面积（亩）", "en": "Area (mu)"},
            }.items()
        },
    }
)

#: Detail fields shown per event type, in order; (field, unit field) pairs.
DETAIL_FIELDS: dict[str, tuple[tuple[str, str | None], ...]] = {
    "pesticide": (
        ("product_name", None),
        ("registration_no", None),
        ("active_ingredient", None),
        ("target", None),
        ("dose", "dose_unit"),
        ("dilution", None),
    ),
    "fertilizing": (("name", None), ("kind", None), ("amount", "amount_unit"), ("area_mu", None)),
    "sowing": (("variety", None), ("seed_source", None), ("area_mu", None)),
    "irrigation": (("method", None), ("water_m3", None)),
    "care": (("operation", None), ("description", None)),
    "harvest": (("quantity", "unit"),),
    "processing": (("process", None), ("grade", None), ("quantity", "unit")),
    "packing": (("package", None), ("units", None)),
    "shipping": (("destination", None), ("carrier", None), ("quantity", "unit")),
    "receiving": (("receiver", None), ("quantity", "unit")),
    "retail": (("store", None),),
}


def detail_rows(event: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows of an event's details, in a shopper's order."""
    details = event.get("details") or {}
    rows = []
    for key, unit in DETAIL_FIELDS.get(event["type"], ()):
        value = details.get(key)
        if value in (None, ""):
            continue
        text = f"{value} {details.get(unit, '')}".strip() if unit else str(value)
        rows.append((_(f"d.{key}"), text))
    return rows


# -- verdict words (shared with the kiosk page) ---------------------------------------------------


def _when(value: datetime | None) -> str:
    return value.astimezone(resolver.CST).strftime("%Y-%m-%d %H:%M") if value else ""


_COUNTED_VERDICTS = frozenset({Verdict.GENUINE.value, Verdict.SUSPICIOUS.value})


def verdict_words(res: resolver.Resolution) -> dict[str, Any]:
    """Headline, explanation, advice and notice of a resolution, in the page's language."""
    v = res.verdict
    out: dict[str, Any] = {"verdict": v, "title": _(f"q.v.{v}"), "lines": [], "advice": ""}
    # StrEnum members compare as their strings (no .value lookup per scan).
    if v == Verdict.COUNTERFEIT:
        out["lines"] = [_("q.v.counterfeit.body")]
        out["advice"] = _("q.v.counterfeit.advice")
        return out
    if v == Verdict.VOIDED:
        out["lines"] = [_("q.v.voided.body")]
        out["advice"] = _("q.v.voided.advice")
    elif v == Verdict.RECALLED and res.recall is not None:
        out["lines"] = [
            _("q.v.recalled.body", level=res.recall["level"], date=res.recall["opened_on"])
        ]
        out["notice"] = res.recall["notice"]
        out["advice"] = _("q.v.recalled.advice")
    elif v == Verdict.SUSPICIOUS:
        reason = res.suspicious_reason or scanlog.COUNT
        out["lines"] = [_(f"q.v.suspicious.{reason}", n=res.scan_count)]
        out["advice"] = _("q.v.suspicious.advice")
    if v in _COUNTED_VERDICTS:
        out["lines"].append(scan_line(res))
        if v == Verdict.GENUINE and not res.is_first_scan:
            out["advice"] = _("q.v.genuine.advice")
    return out


def scan_line(res: resolver.Resolution) -> str:
    if res.is_first_scan or res.scan_count == 0:
        return _("q.v.genuine.first")
    county = ""
    if res.first_region_code:
        region = regions.get(res.first_region_code)
        county = region.name if region else ""
    place = _("q.v.place", county=county) if county else ""
    return _("q.v.genuine.repeat", n=res.scan_count, date=_when(res.first_scan_at), place=place)


# -- scan tokens ----------------------------------------------------------------------------------


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
TOKEN_PURPOSE = "scan-token"
#: 144 bits of HMAC-SHA256: 24 URL-safe characters, no padding.
_TOKEN_MAC_BYTES = 18


def _token_key() -> bytes:
    """The scan tokens' HMAC key: the keyring's key for this purpose (as the IP hash's)."""
    return _token_key_of(keyring())


@functools.lru_cache(maxsize=8)
def _token_key_of(ring: Keyring) -> bytes:
    # HKDF per scan would be wasted work: the derived key only changes with the keyring.
    return ring.derive(TOKEN_PURPOSE)


def _code_digest(code: str) -> str:
    # Binds the token to the page's code in a few ASCII characters, whatever was typed
    # into the URL (a counterfeit "code" may hold dots or Chinese).
    return hashlib.blake2s(code.upper().encode("utf-8"), digest_size=6).hexdigest()


def _mac(key: bytes, value: str) -> str:
    digest = hmac.digest(key, value.encode("ascii"), "sha256")[:_TOKEN_MAC_BYTES]
    return base64.urlsafe_b64encode(digest).decode("ascii")


def scan_token(record: scanlog.ScanRecord, code: str) -> str:
    """``<scan id>.<µs since epoch>.<code digest>.<HMAC-SHA256>``, URL-safe as it is.

    Plain HMAC (stdlib, one C call) rather than itsdangerous' TimestampSigner: the scan's
    own time already dates the token, and the signer's extra timestamp and encodings were
    ~8 % of a phone page's CPU on the project machine."""
    micros = (record.scanned_at - _EPOCH) // _MICROSECOND  # exact, unlike a float timestamp
    value = f"{record.id}.{micros}.{_code_digest(code)}"
    return f"{value}.{_mac(_token_key(), value)}"


def read_token(token: str, code: str, now: datetime | None = None) -> scanlog.ScanRecord | None:
    """The scan a token names, if it is ours, for this code, and at most TOKEN_MAX_AGE old."""
    value, _, mac = token.rpartition(".")
    if not value or not token.isascii():
        return None
    if not hmac.compare_digest(mac, _mac(_token_key(), value)):
        return None
    try:
        scan_id, micros, digest = value.split(".")
        record = scanlog.ScanRecord(id=int(scan_id), scanned_at=_EPOCH + int(micros) * _MICROSECOND)
    except (ValueError, OverflowError):
        return None
    age = (now or datetime.now(UTC)) - record.scanned_at
    if not timedelta(seconds=-60) <= age <= timedelta(seconds=TOKEN_MAX_AGE):  # 60 s: clocks
        return None
    if not hmac.compare_digest(digest, _code_digest(code)):
        return None
    return record


# -- pages ----------------------------------------------------------------------------------------


def _sections(res: resolver.Resolution) -> Markup:
    """The batch's sections, rendered once per content and language."""
    content = res.content
    if content is None:
        return Markup("")
    lang = i18n.current_language()
    fragment = content.rendered.get(lang)
    if fragment is None:
        macro = get_template_attribute("consumer.html", "sections")
        fragment = str(macro(content.data, _, detail_rows, CODE_SLOT))
        content.rendered[lang] = fragment
    return Markup(fragment)


_SLOTS = (VERDICT_SLOT, TOKEN_SLOT, CODE_SLOT)
_SLOT_PATTERN = re.compile("(" + "|".join(map(re.escape, _SLOTS)) + ")")


@dataclass(frozen=True)
class Shell:
    """A rendered page cut at its slots and encoded once: per scan only the slots' values
    are encoded and joined in (no 10-KB replace and encode per scan)."""

    #: UTF-8 text around the slots: one more than ``slots``.
    texts: tuple[bytes, ...]
    #: The slot (VERDICT_SLOT, TOKEN_SLOT, CODE_SLOT) after each text but the last.
    slots: tuple[str, ...]

    @classmethod
    def cut(cls, html: str) -> Shell:
        pieces = _SLOT_PATTERN.split(html)  # text, slot, text, ..., slot, text
        return cls(tuple(p.encode("utf-8") for p in pieces[0::2]), tuple(pieces[1::2]))

    def fill(self, values: dict[str, str]) -> bytes:
        out = [self.texts[0]]
        for slot, text in zip(self.slots, self.texts[1:], strict=True):
            out += (values[slot].encode("utf-8"), text)
        return b"".join(out)


def _shell(res: resolver.Resolution, words: dict[str, Any], with_token: bool) -> Shell:
    """The page around the verdict's words, rendered once per content, language, verdict
    and whether it carries a scan token: a whole template render per scan cost a fifth of
    a phone scan's CPU. Slots: VERDICT_SLOT, TOKEN_SLOT, CODE_SLOT (filled by _html)."""
    lang = i18n.current_language()
    key = f"page.{lang}.{words['verdict']}.{int(with_token)}"
    # With the content (same lifetime); pages without content (counterfeit) per app.
    shells = res.content.rendered if res.content is not None else per_app(_SHELLS, dict)
    shell = shells.get(key)
    if shell is None:
        shell = shells[key] = Shell.cut(
            render_template(
                "consumer.html",
                words={"verdict": words["verdict"], "title": words["title"]},
                verdict_html=Markup(VERDICT_SLOT),
                token=TOKEN_SLOT if with_token else "",
                batch_html=_sections(res),
            )
        )
    return shell


def verdict_body(words: dict[str, Any]) -> Markup:
    """The headline, lines, recall notice and advice of verdict_words, as HTML (inside
    consumer.html's verdict section). Written here, not as a template macro: invoking a
    Jinja macro per scan cost a fifth of the page's own work; markupsafe's escape (C)
    escapes every value (Markup.format runs a Python formatter, slower still)."""
    parts = ["<h1>", escape(words["title"]), "</h1>"]
    for line in words["lines"]:
        parts += ['<p class="line">', escape(line), "</p>"]
    if words.get("notice"):
        parts += ['<blockquote id="recall-notice">', escape(words["notice"]), "</blockquote>"]
    if words["advice"]:
        parts += ['<p class="advice">', escape(words["advice"]), "</p>"]
    return Markup("".join(parts))


def _html(code: str, res: resolver.Resolution, record: scanlog.ScanRecord | None) -> bytes:
    """The page of a resolution, UTF-8."""
    token = scan_token(record, code) if record is not None else ""
    words = verdict_words(res)
    return _shell(res, words, bool(token)).fill(
        {
            VERDICT_SLOT: verdict_body(words),
            TOKEN_SLOT: token,  # URL-safe ASCII: nothing to escape
            CODE_SLOT: code.upper(),  # only on content pages, whose code parsed
        }
    )


#: A phone page's content type (the fast path writes the same).
HTML_TYPE = "text/html; charset=utf-8"


def _answer(html: bytes) -> Response:
    """A phone page as a Flask response (the fast path writes the same headers)."""
    return Response(html, content_type=HTML_TYPE, headers=SCAN_HEADERS)


@bp.get("/q/<code>")
@bp.get("/Q/<code>")
def scan_page(code: str) -> Response:
    """The consumer page of a code. One view, one scan (unless replayed with its token)."""
    replay = read_token(request.args.get("s", ""), code) if request.args.get("s") else None
    if replay is not None:
        ctx = client_context(ScanChannel.PHONE.value, replay=True)
        res = resolve_code(code, ctx)
        return _answer(_html(code, res, replay))
    return _answer(phone_scan(code, request.headers.get("User-Agent"), request.remote_addr))


def phone_scan(code: str, user_agent: str | None, remote_addr: str | None) -> bytes:
    """A phone's scan of ``code``: resolve, log, the page's HTML (UTF-8). The route above
    and the scan fast path (trace.web.fastpath) both answer with it."""
    ctx = scan_context(ScanChannel.PHONE.value, user_agent, remote_addr)
    logged = resolve_and_log(code, ctx)
    return _html(code, logged.resolution, logged.record)


@bp.post("/q/<code>/location")
@bp.post("/Q/<code>/location")
def locate(code: str) -> Response:
    """The shopper's opt-in location for the scan named by the page's token."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):  # JSON, but a list or a number: not our page's post
        abort(400)
    record = read_token(str(body.get("t", "")), code)
    try:
        lat, lon = float(body["lat"]), float(body["lon"])
    except (KeyError, TypeError, ValueError):
        lat = lon = float("nan")
    if record is None or lat != lat or lon != lon:
        abort(400)
    session = db()
    # The scan may still sit in a write-behind buffer: this worker's is written now; another
    # worker's is written within its flush interval, so a scan that is seconds old and not
    # found yet is looked up once more after that (a shopper's tap takes longer anyway).
    flush_scan_log()
    now = datetime.now(UTC)
    located = scanlog.locate(session, record, lat, lon, rules(), now)
    if located.region_code is None and now - record.scanned_at < LOCATE_RETRY_WITHIN:
        buffer = scan_buffer()
        if buffer is not None:
            session.rollback()  # a fresh snapshot for the second look
            time.sleep(min(1.0, 3 * buffer.interval))
            located = scanlog.locate(session, record, lat, lon, rules(), datetime.now(UTC))
    session.commit()
    name = regions.full_name(located.region_code) if located.region_code else ""
    data = {
        "region_code": located.region_code,
        "county": name,
        "suspicious": located.suspicious,
        "message": (_("q.locate.done") + name) if name else _("q.locate.fail"),
        "warning": _("q.locate.warn") if located.suspicious else "",
    }
    response = cast(Response, current_app.json.response(data))
    response.headers.update(SCAN_HEADERS)
    return response


@bp.get("/q/<code>/media/<int:attachment_id>")
def media(code: str, attachment_id: int) -> Response:
    """A public photo or video of the code's batch, if the code's run publishes media.

    Anything else -- forged code, other batch, private file, run without "media" -- is the
    same 404. Range requests are honoured (send_attachment)."""
    parsed = codes.parse(keyring(), code)
    if parsed is None or not is_storable_id(attachment_id):
        abort(404)
    session = db()
    run = session.get(LabelRun, parsed.run_id)
    if (
        run is None
        or run.status != RunStatus.ISSUED.value
        or run.key_version != parsed.key_version
        or not run.first_serial <= parsed.serial <= run.last_serial
        or not templates.is_public(run.template, "media")
    ):
        abort(404)
    attachment = session.scalars(
        select(Attachment).where(
            Attachment.id == attachment_id,
            Attachment.batch_id == run.batch_id,
            Attachment.is_public.is_(True),
        )
    ).one_or_none()
    if attachment is None:
        abort(404)
    return send_attachment(attachment)
