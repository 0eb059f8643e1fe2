"""Region table (trace/regions): names, hierarchy, nearest county, the generated data."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

import pytest

from trace import regions
from trace.regions import lookup

ROOT = Path(__file__).resolve().parents[2]


def _law_of_cosines_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """An independent great-circle formula to check haversine against."""
    p1, p2 = math.radians(a[0]), math.radians(b[0])
    dl = math.radians(b[1] - a[1])
    c = math.sin(p1) * math.sin(p2) + math.cos(p1) * math.cos(p2) * math.cos(dl)
    return lookup.EARTH_RADIUS_KM * math.acos(max(-1.0, min(1.0, c)))


def _point(code: str) -> tuple[float, float]:
    region = regions.get(code)
    assert region is not None and region.lat is not None and region.lon is not None
    return region.lat, region.lon


# --- names and hierarchy -------------------------------------------------------------------


def test_huaning_hierarchy_and_names() -> None:
    chain = regions.hierarchy("530424")
    assert [(r.code, r.name, r.level) for r in chain] == [
        ("530000", "云南省", "province"),
        ("530400", "玉溪市", "city"),
        ("530424", "华宁县", "county"),
    ]
    assert chain[2].parent_code == "530400" and chain[1].parent_code == "530000"
    assert chain[0].parent_code is None
    assert regions.full_name("530424") == "云南省玉溪市华宁县"
    assert regions.full_name("530424", sep=" ") == "云南省 玉溪市 华宁县"


def test_songming_and_wuhua_are_under_kunming() -> None:
    assert [r.name for r in regions.hierarchy("530127")] == ["云南省", "昆明市", "嵩明县"]
    assert regions.full_name("530102") == "云南省昆明市五华区"
    songming = regions.get("530127")
    assert songming is not None
    assert (songming.name, songming.level, songming.parent_code) == ("嵩明县", "county", "530100")


def test_municipality_names_are_not_repeated() -> None:
    assert [r.code for r in regions.hierarchy("110101")] == ["110000", "110100", "110101"]
    assert regions.full_name("110101") == "北京市东城区"


def test_county_directly_under_a_province() -> None:
    assert regions.get("419001") is not None
    assert [r.name for r in regions.hierarchy("419001")] == ["河南省", "济源市"]
    assert regions.city_code("419001") == "419001"


def test_province_and_city_codes() -> None:
    assert regions.province_code("530424") == "530000"
    assert regions.city_code("530424") == "530400"
    assert regions.city_code("530400") == "530400"
    assert regions.city_code("530000") == "530000"
    assert regions.city_code("110101") == "110100"
    assert regions.province_code("110101") == "110000"
    # Pure arithmetic for well-formed codes, even unknown ones.
    assert regions.province_code("539999") == "530000"
    for bad in ("", "53042", "5304240", "53042a", "５３０４２４"):
        with pytest.raises(ValueError):
            regions.province_code(bad)
        with pytest.raises(ValueError):
            regions.city_code(bad)


def test_invalid_codes_are_rejected() -> None:
    assert regions.is_valid_code("530424")
    assert regions.is_valid_code("530400")
    assert regions.is_valid_code("530000")
    for bad in ("", "53042", "5304240", "abcdef", "５３０４２４", "530499", "999999", "000000"):
        assert not regions.is_valid_code(bad), bad
        assert regions.get(bad) is None
        assert regions.hierarchy(bad) == []
        assert regions.full_name(bad) == ""
    assert not regions.is_valid_code(530424)  # type: ignore[arg-type]


def test_children_for_drill_down() -> None:
    yuxi = [r.code for r in regions.children("530400")]
    assert "530424" in yuxi and all(c.startswith("5304") for c in yuxi)
    assert [r.code for r in regions.children("110000")] == ["110100"]
    assert "530400" in [r.code for r in regions.children("530000")]
    assert regions.children("530424") == []
    assert len(regions.provinces()) == 34


# --- distances and nearest county ----------------------------------------------------------


def test_distance_km() -> None:
    assert regions.distance_km((0.0, 0.0), (0.0, 0.0)) == 0.0
    # One degree of a great circle.
    assert regions.distance_km((0.0, 0.0), (0.0, 1.0)) == pytest.approx(
        2 * math.pi * lookup.EARTH_RADIUS_KM / 360
    )
    huaning, songming = _point("530424"), _point("530127")
    d = regions.distance_km(huaning, songming)
    assert d == pytest.approx(_law_of_cosines_km(huaning, songming), rel=1e-9)
    assert d == pytest.approx(regions.distance_km(songming, huaning))
    # The centroids are 113.7 km apart (the county seats, 128 km: Songming lies due north).
    assert 105 < d < 125


def test_nearest_county_inside_huaning() -> None:
    lat, lon = _point("530424")
    for dlat, dlon in ((0.0, 0.0), (0.03, -0.02), (-0.02, 0.04)):
        found = regions.nearest_county(lat + dlat, lon + dlon)
        assert found is not None and found.code == "530424"


def test_nearest_county_in_hebei() -> None:
    # Shijiazhuang, the provincial capital of Hebei.
    found = regions.nearest_county(38.04, 114.51)
    assert found is not None and found.code.startswith("1301"), found
    assert regions.province_code(found.code) == "130000"


def test_nearest_county_far_from_china_is_none() -> None:
    assert regions.nearest_county(20.0, 150.0) is None  # western Pacific
    assert regions.nearest_county(0.0, 0.0) is None  # Gulf of Guinea
    assert regions.nearest_county(-33.87, 151.21) is None  # Sydney
    assert regions.nearest_county(21.03, 105.85) is None  # Hanoi, > 100 km past the border
    assert regions.nearest_county(math.nan, 100.0) is None


def test_nearest_county_in_a_huge_county_is_not_none() -> None:
    # 若羌县 (Xinjiang) is ~200,000 km²: points far from any centroid are still in China.
    ruoqiang = regions.get("652824")
    assert ruoqiang is not None and ruoqiang.radius_km is not None and ruoqiang.radius_km > 150
    assert regions.nearest_county(38.5, 91.0) is not None


def test_nearest_county_only_returns_county_level_units() -> None:
    found = regions.nearest_county(22.94, 113.87)  # Dongguan has no counties
    assert found is not None and found.code == "441900" and regions.children("441900") == []
    found = regions.nearest_county(*_point("530400"))  # Yuxi city centroid
    assert found is not None and found.level == "county"


def test_every_centroid_is_its_own_nearest_county() -> None:
    # Exercises the vectorised search over the whole table (a wrong index mapping would
    # return another county).
    for region in lookup._table().leaves:
        assert region.lat is not None and region.lon is not None
        assert regions.nearest_county(region.lat, region.lon) == region


# --- the generated data --------------------------------------------------------------------


def _rows() -> list[dict[str, str]]:
    with lookup.DATA_FILE.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_every_yunnan_and_hebei_county_has_coordinates_in_its_province() -> None:
    counted = {"53": 0, "13": 0}
    for prefix in counted:
        province = regions.get(prefix + "0000")
        assert province is not None and province.radius_km is not None
        for row in _rows():
            if row["code"].startswith(prefix) and row["level"] == "county":
                region = regions.get(row["code"])
                assert region is not None and region.lat is not None and region.lon is not None
                assert region.radius_km is not None
                d = regions.distance_km(_point(province.code), (region.lat, region.lon))
                assert d <= province.radius_km, row
                counted[prefix] += 1
    # County-level divisions: Yunnan 129, Hebei 167 (national statistics, 2024).
    assert counted == {"53": 129, "13": 167}


def test_table_is_consistent() -> None:
    rows = _rows()
    assert list(rows[0]) == ["code", "name", "level", "parent_code", "lat", "lon", "radius_km"]
    codes = [r["code"] for r in rows]
    assert len(codes) == len(set(codes)) and codes == sorted(codes)
    by_code = {r["code"]: r for r in rows}
    for row in rows:
        assert len(row["code"]) == 6 and row["code"].isdigit() and row["name"]
        assert row["level"] in lookup.LEVELS
        if row["level"] == "province":
            assert row["parent_code"] == ""
            continue
        parent = by_code[row["parent_code"]]
        assert row["code"].startswith(parent["code"][:2])
        assert lookup.LEVELS.index(parent["level"]) < lookup.LEVELS.index(row["level"])
        if row["lat"]:
            assert 3 <= float(row["lat"]) <= 54 and 73 <= float(row["lon"]) <= 136
    assert lookup.DATA_FILE.stat().st_size < 300_000


def test_generator_reproduces_the_committed_table(tmp_path: Path) -> None:
    out = tmp_path / "regions.csv"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_regions.py"), "--output", str(out)],
        check=True,
        capture_output=True,
    )
    assert out.read_bytes() == lookup.DATA_FILE.read_bytes()
