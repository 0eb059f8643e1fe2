"""The regulator dashboard (监管驾驶舱): `/dashboard`, server-rendered, charts as inline SVG.

Signed-in regulators see their jurisdiction and drill down province → city → county by
clicking a region (`?region=`); enterprise administrators see their own products; the
platform administrator sees everything. Every table links to its CSV (the analytics API,
which accepts the session cookie). Alerts are acknowledged and closed here, recalls opened
(from a PHI or inspection row), traced forward and closed.

The page is one request: the figures come from the rollups (services.analytics), charts are
SVG drawn on the server, and the only static files are a small CSS and a few lines of JS.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from typing import Any, cast
from urllib.parse import urlencode

from flask import (
    Blueprint,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.wrappers import Response

from trace.api.auth import current_user
from trace.errors import DomainError
from trace.extensions import db
from trace.models import Batch
from trace.models.enums import Role
from trace.services import alerts, analytics, recalls, rollups
from trace.services.actors import Actor
from trace.services.analytics import DateRange, Scope, Table
from trace.services.auth import actor_for
from trace.validation import is_local_path
from trace.web import i18n
from trace.web.i18n import current_language
from trace.web.i18n import translate as _

bp = Blueprint("dashboard", __name__)

#: Regulators read times in Beijing time; the database and the API keep UTC.
CST = rollups.CST  # China time, as the rollups count days


@bp.app_template_filter("cst")
def china_time(value: datetime | str | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A UTC datetime (or its ISO text, as the report services give it) in China time."""
    if value is None or value == "":
        return "–"
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(CST).strftime(fmt)


ALLOWED_ROLES = (Role.REGULATOR, Role.ENTERPRISE_ADMIN, Role.PLATFORM_ADMIN)
TOP_N = 10
SERIES_COLOURS = {"scans": "#2f6b3a", "problems": "#c0392b"}
FARMING_COLOURS = {
    "sowing": "#8bc34a",
    "fertilizing": "#795548",
    "pesticide": "#e67e22",
    "irrigation": "#3498db",
    "care": "#16a085",
    "harvest": "#f1c40f",
}

i18n.add_messages(
    {
        "dash.title": {"zh": "监管驾驶舱", "en": "Regulator dashboard"},
        "dash.title.enterprise": {"zh": "企业数据看板", "en": "Enterprise dashboard"},
        "dash.from": {"zh": "起", "en": "From"},
        "dash.to": {"zh": "止", "en": "To"},
        "dash.granularity": {"zh": "粒度", "en": "By"},
        "dash.g.day": {"zh": "按日", "en": "Day"},
        "dash.g.week": {"zh": "按周", "en": "Week"},
        "dash.g.month": {"zh": "按月", "en": "Month"},
        "dash.apply": {"zh": "查询", "en": "Apply"},
        "dash.csv": {"zh": "导出CSV", "en": "CSV"},
        "dash.kpi.scans": {"zh": "扫码量", "en": "Scans"},
        "dash.kpi.genuine": {"zh": "正常扫码", "en": "Genuine"},
        "dash.kpi.suspicious": {"zh": "可疑扫码", "en": "Suspicious"},
        "dash.kpi.counterfeit": {"zh": "假冒码扫描", "en": "Counterfeit"},
        "dash.kpi.rate": {"zh": "扫码率", "en": "Scan rate"},
        "dash.kpi.alerts": {"zh": "待处理预警", "en": "Open alerts"},
        "dash.kpi.recalls": {"zh": "进行中召回", "en": "Open recalls"},
        "dash.series": {"zh": "扫码量趋势", "en": "Scan volume"},
        "dash.series.problems": {"zh": "假冒+可疑", "en": "Counterfeit + suspicious"},
        "dash.regions": {"zh": "区域扫码对比", "en": "Regional comparison"},
        "dash.regions.hint": {
            "zh": "点击地区逐级下钻（省 → 市 → 县）",
            "en": "Click a region to drill down (province → city → county)",
        },
        "dash.products": {"zh": "扫码量前十产品", "en": "Top products"},
        "dash.enterprises": {"zh": "扫码量前十企业", "en": "Top enterprises"},
        "dash.counterfeit": {
            "zh": "假冒与可疑扫码（按县）",
            "en": "Counterfeit and suspicious by county",
        },
        "dash.farming": {"zh": "农事操作（按月）", "en": "Farming operations per month"},
        "dash.supply": {"zh": "月产品供应量", "en": "Monthly supply"},
        "dash.rate": {"zh": "扫码率", "en": "Scan rate"},
        "dash.phi": {"zh": "违反安全间隔期", "en": "Pre-harvest interval violations"},
        "dash.failed": {"zh": "检测不合格", "en": "Failed inspections"},
        "dash.alerts": {"zh": "预警", "en": "Alerts"},
        "dash.recalls": {"zh": "召回", "en": "Recalls"},
        "dash.none": {"zh": "暂无数据", "en": "No data"},
        "dash.acknowledge": {"zh": "确认", "en": "Acknowledge"},
        "dash.close": {"zh": "关闭", "en": "Close"},
        "dash.note": {"zh": "处理说明", "en": "Note"},
        "dash.recall.open": {"zh": "发起召回", "en": "Recall"},
        "dash.recall.report": {"zh": "追踪报告", "en": "Trace-forward report"},
        "dash.recall.reason": {"zh": "召回原因", "en": "Reason"},
        "dash.recall.level": {"zh": "召回级别", "en": "Level"},
        "dash.recall.notice": {
            "zh": "公众告知（消费者扫码可见）",
            "en": "Public notice (shown to consumers)",
        },
        "dash.recall.submit": {"zh": "确认召回", "en": "Open the recall"},
        "dash.recall.confirm": {
            "zh": "召回后该批次所有码将立即显示为“已召回”，确定吗？",
            "en": "Every code of this batch will read “recalled” at once. Continue?",
        },
        "dash.recall.labels": {"zh": "赋码情况", "en": "Labels issued"},
        "dash.recall.scans": {"zh": "扫码去向", "en": "Where the codes were scanned"},
        "dash.recall.devices": {"zh": "溯源一体机", "en": "Kiosks"},
        "dash.recall.movements": {"zh": "发货与收货记录", "en": "Shipping and receiving"},
        "dash.recall.close": {"zh": "结束召回", "en": "Close the recall"},
        "dash.recall.closed_note": {
            "zh": "结束后批次保持“已召回”状态。",
            "en": "The batch stays recalled after the recall is closed.",
        },
        "dash.status.open": {"zh": "待处理", "en": "open"},
        "dash.batch.open": {"zh": "在产", "en": "open"},
        "dash.batch.sealed": {"zh": "已封批", "en": "sealed"},
        "dash.batch.held": {"zh": "暂扣", "en": "held"},
        "dash.batch.recalled": {"zh": "已召回", "en": "recalled"},
        "dash.status.acknowledged": {"zh": "已确认", "en": "acknowledged"},
        "dash.status.closed": {"zh": "已关闭", "en": "closed"},
        "dash.kind.phi_violation": {"zh": "违反安全间隔期", "en": "PHI violation"},
        "dash.kind.failed_inspection": {"zh": "检测不合格", "en": "Failed inspection"},
        "dash.kind.suspicious_cluster": {"zh": "可疑扫码聚集", "en": "Suspicious scans"},
        "dash.kind.counterfeit_burst": {"zh": "假冒码激增", "en": "Counterfeit burst"},
        "dash.back": {"zh": "返回驾驶舱", "en": "Back to the dashboard"},
        "dash.total": {"zh": "合计", "en": "Total"},
        "dash.first": {"zh": "首次", "en": "First"},
        "dash.last": {"zh": "最近", "en": "Last"},
        "dash.since_recall": {"zh": "召回后扫码", "en": "Scans since the recall"},
        "dash.forbidden": {
            "zh": "此页面供监管部门和企业管理员使用。",
            "en": "This page is for regulators and enterprise administrators.",
        },
    }
)


# -- access -------------------------------------------------------------------------------


def _actor() -> Actor:
    user = current_user()
    if user is None:
        abort(redirect(url_for("home.login", next=request.full_path.rstrip("?"))))
    actor = actor_for(user)
    if actor.role not in ALLOWED_ROLES:
        abort(403, description=_("dash.forbidden"))
    return actor


def csrf_token() -> str:
    token = session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(24)
        session["csrf"] = token
    return str(token)


def _check_csrf() -> None:
    sent = request.form.get("csrf", "")
    if not hmac.compare_digest(sent, str(session.get("csrf", ""))) or not sent:
        abort(400, description="The form expired; reload the page and try again.")


@bp.app_context_processor
def _inject() -> dict[str, Any]:
    return {"csrf_token": csrf_token}


# -- charts (geometry here, drawing in dashboard_charts.html) -----------------------------


def nice_max(value: float) -> int:
    """A round axis maximum at or above value: 1, 2, 5 × 10^n."""
    if value <= 0:
        return 1
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return int(step * magnitude)
    return int(10 * magnitude)


def _tick_fractions(peak: int) -> tuple[float, ...]:
    """Axis ticks that fall on whole numbers."""
    if peak % 4 == 0:
        return (0, 0.25, 0.5, 0.75, 1)
    return (0, 0.5, 1) if peak % 2 == 0 else (0, 1)


def line_chart(
    labels: list[str], series: dict[str, list[int]], width: int = 720, height: int = 220
) -> dict[str, Any]:
    left, right, top, bottom = 48, 12, 12, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = nice_max(max((max(v) for v in series.values() if v), default=0))
    n = len(labels)

    def x(i: int) -> float:
        return left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y(v: float) -> float:
        return top + plot_h - plot_h * v / peak

    lines = [
        {
            "key": key,
            "colour": SERIES_COLOURS.get(key, "#555"),
            "points": " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values)),
        }
        for key, values in series.items()
    ]
    ticks = [{"y": y(peak * f), "label": f"{int(peak * f):,}"} for f in _tick_fractions(peak)]
    every = max(1, n // 6)
    xlabels = [{"x": x(i), "label": labels[i]} for i in range(0, n, every)]
    # Invisible hover targets with a tooltip, only when there are few enough points.
    hovers = []
    if n <= 120:
        main = next(iter(series.values()))
        band = plot_w / max(n, 1)
        hovers = [
            {"x": x(i) - band / 2, "w": band, "label": labels[i], "value": main[i]}
            for i in range(n)
        ]
    return {
        "width": width,
        "height": height,
        "left": left,
        "top": top,
        "plot_w": plot_w,
        "plot_h": plot_h,
        "lines": lines,
        "ticks": ticks,
        "xlabels": xlabels,
        "hovers": hovers,
    }


def bar_list(
    rows: list[dict[str, Any]], label_key: str, sub_key: str | None = None, value_key: str = "scans"
) -> dict[str, Any]:
    """The first TOP_N rows as horizontal bars, in per cent of the largest value."""
    top = rows[:TOP_N]
    peak = max((r[value_key] or 0 for r in top), default=0) or 1
    return {
        "bars": [
            {
                "row": r,
                "label": r[label_key],
                "sub": r.get(sub_key) if sub_key else None,
                "value": r[value_key] or 0,
                "pct": 100.0 * (r[value_key] or 0) / peak,
            }
            for r in top
        ]
    }


def stacked_months(table: Table, width: int = 720, height: int = 220) -> dict[str, Any]:
    """Farming records per month, stacked by type."""
    months = sorted({r["month"] for r in table.rows})
    types = [t for t in analytics.FARMING_TYPES if any(r["type"] == t for r in table.rows)]
    values = {(r["month"], r["type"]): r["events"] for r in table.rows}
    totals = [sum(values.get((m, t), 0) for t in types) for m in months]
    peak = nice_max(max(totals, default=0))
    left, top, bottom = 48, 12, 28
    plot_w, plot_h = width - left - 12, height - top - bottom
    slot = plot_w / max(len(months), 1)
    bars = []
    for i, month in enumerate(months):
        base = 0
        for kind in types:
            v = values.get((month, kind), 0)
            if not v:
                continue
            h = plot_h * v / peak
            bars.append(
                {
                    "x": left + i * slot + slot * 0.15,
                    "w": slot * 0.7,
                    "y": top + plot_h - plot_h * base / peak - h,
                    "h": h,
                    "colour": FARMING_COLOURS.get(kind, "#999"),
                    "title": f"{month} {_type_name(kind)}: {v}",
                }
            )
            base += v
    return {
        "width": width,
        "height": height,
        "left": left,
        "top": top,
        "plot_w": plot_w,
        "plot_h": plot_h,
        "bars": bars,
        "ticks": [
            {"y": top + plot_h - plot_h * f, "label": f"{int(peak * f):,}"}
            for f in _tick_fractions(peak)
        ],
        "xlabels": [
            {"x": left + i * slot + slot / 2, "label": m[2:]} for i, m in enumerate(months)
        ],
        "legend": [{"colour": FARMING_COLOURS[t], "label": _type_name(t)} for t in types],
    }


def _type_name(kind: str) -> str:
    zh, en = analytics.EVENT_TYPE_NAMES[kind]
    return en if current_language() == "en" else zh


# -- the page -----------------------------------------------------------------------------


def _parse_date(name: str) -> date | None:
    value = request.args.get(name)
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        abort(400, description=f"'{name}' is not a date (YYYY-MM-DD).")


def _link(**changes: Any) -> str:
    """This page's URL with some query parameters changed (None removes one)."""
    params = {k: v for k, v in request.args.items()}
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    return url_for("dashboard.index") + ("?" + urlencode(params) if params else "")


def _csv(path: str, scope: Scope, rng: DateRange, **extra: Any) -> str:
    params = {"format": "csv", "lang": current_language(), "from": rng.first.isoformat(),
              "to": rng.last.isoformat(), **extra}  # fmt: skip
    if scope.region or scope.actor.is_regulator:
        params["region"] = scope.region
    return f"/api/v1/analytics/{path}?{urlencode(params)}"


def _breadcrumb(actor: Actor, scope: Scope) -> list[dict[str, Any]]:
    home = actor.region_prefix or "" if actor.is_regulator else ""
    crumbs = []
    for code, name in analytics.region_path(scope.region):
        reachable = code.startswith(home) if actor.is_regulator else True
        crumbs.append(
            {"code": code, "name": name, "href": _link(region=code) if reachable else None}
        )
    return crumbs


def _granularity(rng: DateRange) -> str:
    chosen = request.args.get("granularity")
    if chosen in analytics.GRANULARITIES:
        return chosen
    return "day" if rng.days() <= 92 else "week"


#: Threads that read a dashboard's tables side by side (PostgreSQL): each holds a pooled
#: connection while it runs, so this bounds what one worker process takes from the pool.
_TABLE_READERS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="dashboard")


def _tables(session_: Session, scope: Scope, rng: DateRange, granularity: str) -> dict[str, Table]:
    """The dashboard's ten tables. On PostgreSQL they are read side by side, each on a
    session of its own: the page waits for the slowest query instead of the sum of all
    (a province's dashboard at 10 million scans). The request's own work so far -- rollups
    folded in by refresh_for_request, alerts -- is committed first so they see it."""
    jobs: dict[str, Callable[[Session], Table]] = {
        "series": lambda s: analytics.scan_series(s, scope, rng, granularity),
        "regions": lambda s: analytics.scan_regions(s, scope, rng),
        "products": lambda s: analytics.scan_products(s, scope, rng, TOP_N),
        "enterprises": lambda s: analytics.scan_enterprises(s, scope, rng, TOP_N),
        "counterfeit": lambda s: analytics.counterfeit_by_county(s, scope, rng),
        "rate": lambda s: analytics.scan_rate(s, scope, rng),
        "farming": lambda s: analytics.farming_operations(s, scope, rng),
        "supply": lambda s: analytics.monthly_supply(s, scope, rng),
        "phi": lambda s: analytics.phi_violations(s, scope, rng),
        "failed": lambda s: analytics.failed_inspections(s, scope, rng),
    }
    if session_.get_bind().dialect.name != "postgresql":  # SQLite: one writer, no gain
        return {name: job(session_) for name, job in jobs.items()}
    session_.commit()
    factory = cast(sessionmaker[Session], current_app.extensions["trace.sessions"])

    def read(job: Callable[[Session], Table]) -> Table:
        with factory() as own:
            analytics.plan_per_query(own)
            return job(own)

    futures = {name: _TABLE_READERS.submit(read, job) for name, job in jobs.items()}
    return {name: future.result() for name, future in futures.items()}


@bp.get("/dashboard")
def index() -> str:
    actor = _actor()
    try:
        scope = analytics.scope_for(actor, request.args.get("region"))
        rng = analytics.date_range(_parse_date("from"), _parse_date("to"))
    except DomainError as exc:
        abort(403 if exc.title == "Not allowed" else 400, description=exc.detail)
    session_ = db()
    analytics.plan_per_query(session_)
    rollups.refresh_for_request(session_)
    alerts.refresh_if_due(session_)
    granularity = _granularity(rng)
    tables = _tables(session_, scope, rng, granularity)
    series, regions_, products = tables["series"], tables["regions"], tables["products"]
    enterprises, counterfeit, rate = tables["enterprises"], tables["counterfeit"], tables["rate"]
    farming, supply, phi, failed = (
        tables["farming"],
        tables["supply"],
        tables["phi"],
        tables["failed"],
    )
    totals = {k: sum((r[k] or 0) for r in series.rows) for k in ("scans", *analytics.VERDICTS)}
    open_alerts = alerts.list_alerts(session_, actor, region=scope.region or None, limit=50)
    recall_list = recalls.list_recalls(session_, actor)[:20]
    labels = [r["period"] for r in series.rows]
    chart = line_chart(
        labels,
        {
            "scans": [r["scans"] for r in series.rows],
            "problems": [(r["counterfeit"] or 0) + r["suspicious"] for r in series.rows],
        },
    )
    region_rows = [
        {**r, "href": _link(region=r["region_code"]) if r.get("drillable") else None}
        for r in regions_.rows
    ]
    return render_template(
        "dashboard.html",
        actor=actor,
        user=current_user(),
        scope=scope,
        rng=rng,
        granularity=granularity,
        granularities=analytics.GRANULARITIES,
        breadcrumb=_breadcrumb(actor, scope),
        totals=totals,
        rate=rate,
        alert_count=sum(1 for a in open_alerts if a.status != "closed"),
        open_recalls=sum(1 for r in recall_list if r.status == "open"),
        chart=chart,
        regions=regions_,
        region_rows=region_rows,
        region_bars=bar_list(region_rows, "region_name"),
        products=products,
        product_bars=bar_list(products.rows, "product_name", "enterprise_name"),
        enterprises=enterprises,
        enterprise_bars=bar_list(enterprises.rows, "enterprise_name"),
        counterfeit=counterfeit,
        farming=farming,
        farming_chart=stacked_months(farming),
        supply=supply,
        phi=phi,
        failed=failed,
        alerts=open_alerts,
        recalls=recall_list,
        region_name=analytics.region_full_name,
        csv=lambda path, **extra: _csv(path, scope, rng, **extra),
        link=_link,
        lang_link=_link(lang=i18n.other_language()),
        can_act=actor.is_regulator,
        can_recall=actor.is_regulator or actor.role is Role.ENTERPRISE_ADMIN,
    )


# -- actions ------------------------------------------------------------------------------


def _back(default: str) -> Response:
    target = request.form.get("next", "")
    return redirect(target if is_local_path(target) else default)


def _act(action: Callable[[], Any], default: str) -> Response:
    """Run a form's action, then go back. A refused action (DomainError) goes to the one
    error mapping (api.problems), which answers a page with the error's own status."""
    action()
    return _back(default)


@bp.post("/dashboard/alerts/<int:alert_id>/acknowledge")
def acknowledge_alert(alert_id: int) -> Response:
    actor = _actor()
    _check_csrf()
    note = request.form.get("note", "")
    return _act(lambda: alerts.acknowledge(db(), actor, alert_id, note), url_for(".index"))


@bp.post("/dashboard/alerts/<int:alert_id>/close")
def close_alert(alert_id: int) -> Response:
    actor = _actor()
    _check_csrf()
    note = request.form.get("note", "")
    return _act(lambda: alerts.close(db(), actor, alert_id, note), url_for(".index"))


@bp.route("/dashboard/batches/<int:batch_id>/recall", methods=["GET", "POST"])
def recall_batch(batch_id: int) -> Response | str:
    actor = _actor()
    from trace.services.scope import get_visible

    try:
        batch = get_visible(db(), Batch, batch_id, actor)
    except DomainError:
        abort(404)
    if request.method == "POST":
        _check_csrf()
        try:
            recall = recalls.open_recall(
                db(),
                actor,
                batch_id,
                reason=request.form.get("reason", ""),
                level=request.form.get("level", ""),
                public_notice=request.form.get("public_notice", ""),
            )
        except DomainError as exc:
            return render_template(
                "dashboard_recall_new.html", batch=batch, levels=recalls.LEVELS, error=exc.detail,
                form=request.form,
            )  # fmt: skip
        return redirect(url_for(".recall_report", recall_id=recall.id))
    return render_template(
        "dashboard_recall_new.html", batch=batch, levels=recalls.LEVELS, error=None, form={}
    )


@bp.get("/dashboard/recalls/<int:recall_id>")
def recall_report(recall_id: int) -> str:
    actor = _actor()
    try:
        report = recalls.trace_forward(db(), actor, recall_id)
    except DomainError:
        abort(404)
    return render_template(
        "dashboard_recall.html",
        report=report,
        actor=actor,
        level_en=recalls.LEVEL_NAMES_EN,
        can_close=actor.is_regulator or actor.role is Role.ENTERPRISE_ADMIN,
    )


@bp.post("/dashboard/recalls/<int:recall_id>/close")
def close_recall(recall_id: int) -> Response:
    actor = _actor()
    _check_csrf()
    note = request.form.get("note", "")
    here = url_for(".recall_report", recall_id=recall_id)
    return _act(lambda: recalls.close_recall(db(), actor, recall_id, note), here)
