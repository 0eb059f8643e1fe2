"""The kiosk page (溯源一体机): ``GET /kiosk`` and its JSON call ``POST /kiosk/scan``.

A kiosk's barcode scanner types the label's QR payload (the whole URL or the code) like a
keyboard and ends with Enter. The page keeps an input focused, posts what was typed, shows
the verdict large and returns to the idle screen after ``TRACE_KIOSK_IDLE_SECONDS``.

The kiosk is set up once by pasting its device token (from ``POST /api/v1/devices``) into
the page; the token is then kept in an HttpOnly, SameSite=Strict cookie, and every scan
authenticates it again (a deactivated or rotated device stops at once). Scans are logged
with channel ``kiosk`` and the device's region as the county.
"""

from __future__ import annotations

from typing import Any, cast

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.wrappers import Response as BaseResponse

from trace.api.scans import SCAN_HEADERS, client_context, resolve_and_log
from trace.errors import Unauthenticated
from trace.extensions import config, db
from trace.models import Device
from trace.models.enums import DeviceKind, ScanChannel
from trace.regions import lookup as regions
from trace.services import auth
from trace.services import resolve as resolver
from trace.web import i18n
from trace.web.consumer import verdict_words
from trace.web.i18n import translate as _

bp = Blueprint("kiosk", __name__)

COOKIE = "kiosk_device"
COOKIE_MAX_AGE = 10 * 365 * 24 * 3600

i18n.add_messages(
    {
        "k.title": {"zh": "农产品溯源查询机", "en": "Traceability kiosk"},
        "k.idle": {
            "zh": "请将商品上的溯源码对准扫描口",
            "en": "Hold the product's code to the scanner",
        },
        "k.idle.sub": {
            "zh": "查看产地、生产记录和检测报告，辨别真伪",
            "en": "See origin, production records and inspections; check it is genuine",
        },
        "k.input": {"zh": "溯源码", "en": "Trace code"},
        "k.busy": {"zh": "正在查询…", "en": "Looking it up…"},
        "k.error": {"zh": "查询失败，请重试", "en": "Lookup failed, please try again"},
        "k.back": {"zh": "秒后返回", "en": "s until the start screen"},
        "k.setup": {"zh": "设置查询机", "en": "Set up this kiosk"},
        "k.setup.help": {
            "zh": "请输入平台为本机签发的设备令牌（dev_ 开头）。",
            "en": "Enter the device token the platform issued for this kiosk (starts with dev_).",
        },
        "k.setup.bad": {"zh": "设备令牌无效或已停用。", "en": "Invalid or inactive device token."},
        "k.setup.save": {"zh": "保存", "en": "Save"},
        "k.origin": {"zh": "产地", "en": "Origin"},
        "k.producer": {"zh": "生产者", "en": "Producer"},
        "k.harvest": {"zh": "采收", "en": "Harvested"},
        "k.inspection": {"zh": "检测", "en": "Inspection"},
        "k.certificates": {"zh": "认证", "en": "Certificates"},
        "k.location": {"zh": "本机位置", "en": "Kiosk location"},
    }
)


def _device() -> Device | None:
    secret = request.cookies.get(COOKIE, "")
    if not secret:
        header = request.headers.get("Authorization", "")
        scheme, _sep, value = header.partition(" ")
        secret = value.strip() if scheme.lower() == "bearer" else ""
    if not secret.startswith(auth.DEVICE_TOKEN_PREFIX):
        return None
    try:
        return auth.authenticate_device(db(), secret)
    except Unauthenticated:
        return None


@bp.get("/kiosk")
def kiosk() -> str:
    device = _device()
    return render_template(
        "kiosk.html",
        device=device,
        region=regions.full_name(device.region_code) if device else "",
        idle_seconds=config().kiosk_idle_seconds,
        error=request.args.get("error"),
    )


@bp.post("/kiosk/setup")
def setup() -> BaseResponse:
    secret = request.form.get("token", "").strip()
    try:
        auth.authenticate_device(db(), secret)
    except Unauthenticated:
        return redirect(url_for("kiosk.kiosk", error="1"))
    response = redirect(url_for("kiosk.kiosk"))
    response.set_cookie(
        COOKIE,
        secret,
        max_age=COOKIE_MAX_AGE,
        httponly=True,
        samesite="Strict",
        secure=request.is_secure,
    )
    return response


def _summary(res: resolver.Resolution) -> dict[str, Any]:
    """What the big screen shows besides the verdict: a few lines a shopper reads at once."""
    data = res.content.data if res.content is not None else {}
    product = data.get("product", {})
    lines: list[tuple[str, str]] = []
    origin = data.get("origin")
    if origin:
        city = origin["city"] if origin["city"] != origin["province"] else ""
        place = (
            origin["province"] + city + origin["county"] + origin["township"] + origin["village"]
        )
        lines.append((_("k.origin"), place))
    producer = data.get("producer")
    if producer:
        wechat = f"（{producer['wechat_account']}）" if producer.get("wechat_account") else ""
        lines.append((_("k.producer"), producer["name"] + wechat))
    dates = data.get("dates") or {}
    if dates.get("harvest_date"):
        lines.append((_("k.harvest"), dates["harvest_date"]))
    if data.get("grade"):
        lines.append((_("q.f.grade"), data["grade"]))
    inspections = data.get("inspections") or []
    if inspections:
        passed = all(i["details"].get("verdict") == "pass" for i in inspections)
        lines.append((_("k.inspection"), _("q.pass") if passed else _("q.fail")))
    certificates = data.get("certificates") or []
    if certificates:
        lines.append(
            (
                _("k.certificates"),
                "、".join(c["details"].get("cert_type", "") for c in certificates),
            )
        )
    return {
        "product": product.get("name", ""),
        "spec": " ".join(x for x in (product.get("brand"), product.get("specification")) if x),
        "batch_no": product.get("batch_no", ""),
        "lines": lines,
    }


@bp.post("/kiosk/scan")
def scan() -> Response:
    """The kiosk's JSON call: resolve what the scanner typed, as this device."""
    device = _device()
    if device is None:
        response = cast(Response, current_app.json.response({"error": _("k.setup.bad")}))
        response.status_code = 401
        return response
    body = request.get_json(silent=True)
    if not isinstance(body, dict):  # not what the kiosk page sends
        abort(400)
    text = str(body.get("code", ""))[:300]
    channel = (
        ScanChannel.KIOSK.value
        if device.kind == DeviceKind.KIOSK.value
        else ScanChannel.PRINTER_CHECK.value
    )
    ctx = client_context(channel, device_id=device.id, region_code=device.region_code)
    logged = resolve_and_log(text, ctx)
    res = logged.resolution
    payload = {
        "verdict": res.verdict,
        "words": verdict_words(res),
        "summary": _summary(res) if res.genuine_code else None,
        "scan_count": res.scan_count,
    }
    response = cast(Response, current_app.json.response(payload))
    response.headers.update(SCAN_HEADERS)
    return response
