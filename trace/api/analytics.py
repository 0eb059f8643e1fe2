"""Analytics tables (统计分析) as JSON or as CSV for Excel: `?format=csv`.

Every endpoint takes `from`/`to` (China-time dates, inclusive; default the last twelve
months) and `region` (a prefix inside the caller's jurisdiction, for drill-down).
Regulators see scans made in their region and records of enterprises registered there;
enterprises see their own codes and records.
"""

from __future__ import annotations

from typing import Any

from flask import Response
from flask_smorest import Blueprint

from trace.api.auth import current_actor
from trace.api.schemas.oversight import (
    AnalyticsQuery,
    ListQuery,
    RegionsQuery,
    SeriesQuery,
    SummaryOut,
    TableOut,
)
from trace.extensions import db
from trace.services import alerts, analytics, csv_export, recalls, rollups
from trace.services.analytics import DateRange, Scope, Table

blp = Blueprint(
    "analytics", __name__, description="Analytics for regulators and enterprises (统计分析)"
)


def _context(args: dict[str, Any], *, scans: bool = True) -> tuple[Scope, DateRange]:
    scope = analytics.scope_for(current_actor(), args.get("region"))
    rng = analytics.date_range(args.get("first"), args.get("last"))
    analytics.plan_per_query(db())
    if scans:
        # Fold in scans made since the last rollup, when that is a small job.
        rollups.refresh_for_request(db())
    return scope, rng


def dump_table(table: Table, lang: str = "zh") -> dict[str, Any]:
    return {
        "name": table.name,
        "columns": [{"key": c.key, "label": c.label(lang), "kind": c.kind} for c in table.columns],
        "rows": table.rows,
        "meta": table.meta,
    }


def answer(table: Table, args: dict[str, Any]) -> Any:
    if args.get("format") == "csv":
        name = csv_export.filename(table)
        return Response(
            csv_export.table_to_csv(table, args.get("lang", "zh")),
            mimetype="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    return dump_table(table, args.get("lang", "zh"))


@blp.route("/analytics/scans/series")
@blp.arguments(SeriesQuery, location="query")
@blp.response(200, TableOut)
def scan_series(args: dict[str, Any]) -> Any:
    """Scan volume per day, week or month, by verdict (扫码量)."""
    scope, rng = _context(args)
    return answer(analytics.scan_series(db(), scope, rng, args["granularity"]), args)


@blp.route("/analytics/scans/regions")
@blp.arguments(RegionsQuery, location="query")
@blp.response(200, TableOut)
def scan_regions(args: dict[str, Any]) -> Any:
    """Regional comparison (区域扫码对比): regions one level down, or at `level`."""
    scope, rng = _context(args)
    return answer(analytics.scan_regions(db(), scope, rng, args.get("level")), args)


@blp.route("/analytics/scans/enterprises")
@blp.arguments(ListQuery, location="query")
@blp.response(200, TableOut)
def scan_enterprises(args: dict[str, Any]) -> Any:
    """Scans by enterprise, most scanned first."""
    scope, rng = _context(args)
    return answer(analytics.scan_enterprises(db(), scope, rng, args["limit"]), args)


@blp.route("/analytics/scans/products")
@blp.arguments(ListQuery, location="query")
@blp.response(200, TableOut)
def scan_products(args: dict[str, Any]) -> Any:
    """Scans by product, most scanned first."""
    scope, rng = _context(args)
    return answer(analytics.scan_products(db(), scope, rng, args["limit"]), args)


@blp.route("/analytics/scans/rate")
@blp.arguments(AnalyticsQuery, location="query")
@blp.response(200, TableOut)
def scan_rate(args: dict[str, Any]) -> Any:
    """Scan rate: codes issued in the range and how many have been scanned (扫码率)."""
    scope, rng = _context(args)
    return answer(analytics.scan_rate(db(), scope, rng), args)


@blp.route("/analytics/scans/counterfeit")
@blp.arguments(AnalyticsQuery, location="query")
@blp.response(200, TableOut)
def counterfeit(args: dict[str, Any]) -> Any:
    """Counterfeit attempts and suspicious scans by county (假冒与可疑扫码)."""
    scope, rng = _context(args)
    return answer(analytics.counterfeit_by_county(db(), scope, rng), args)


@blp.route("/analytics/farming")
@blp.arguments(AnalyticsQuery, location="query")
@blp.response(200, TableOut)
def farming(args: dict[str, Any]) -> Any:
    """Farming operations per month and type (农事操作)."""
    scope, rng = _context(args, scans=False)
    return answer(analytics.farming_operations(db(), scope, rng), args)


@blp.route("/analytics/supply")
@blp.arguments(AnalyticsQuery, location="query")
@blp.response(200, TableOut)
def supply(args: dict[str, Any]) -> Any:
    """Monthly supply: labels issued and batch quantities (月产品供应量)."""
    scope, rng = _context(args, scans=False)
    return answer(analytics.monthly_supply(db(), scope, rng), args)


@blp.route("/analytics/phi-violations")
@blp.arguments(AnalyticsQuery, location="query")
@blp.response(200, TableOut)
def phi_violations(args: dict[str, Any]) -> Any:
    """Batches harvested inside a pesticide's pre-harvest interval (安全间隔期)."""
    scope, rng = _context(args, scans=False)
    return answer(analytics.phi_violations(db(), scope, rng), args)


@blp.route("/analytics/failed-inspections")
@blp.arguments(AnalyticsQuery, location="query")
@blp.response(200, TableOut)
def failed_inspections(args: dict[str, Any]) -> Any:
    """Inspection records with verdict "fail" (检测不合格)."""
    scope, rng = _context(args, scans=False)
    return answer(analytics.failed_inspections(db(), scope, rng), args)


@blp.route("/analytics/summary")
@blp.arguments(AnalyticsQuery, location="query")
@blp.response(200, SummaryOut)
def summary(args: dict[str, Any]) -> Any:
    """Headline figures: scans by verdict, scan rate, open alerts and recalls."""
    actor = current_actor()
    scope, rng = _context(args)
    rate = analytics.scan_rate(db(), scope, rng).meta
    return {
        "meta": analytics.table_meta(scope, rng),
        "scans": analytics.scan_totals(db(), scope, rng),
        "codes_issued": rate["codes_issued"],
        "codes_scanned": rate["codes_scanned"],
        "scan_rate": rate["scan_rate"],
        "open_alerts": alerts.count_open(db(), actor, scope.region),
        "open_recalls": len(recalls.list_recalls(db(), actor, status="open")),
        "rollup": rollups.status(db()),
    }
