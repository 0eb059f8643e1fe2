"""Administrative regions of China (6-digit division codes); see lookup.py and README.md."""

from trace.regions.lookup import (
    Region,
    children,
    city_code,
    distance_km,
    full_name,
    get,
    hierarchy,
    is_valid_code,
    nearest_county,
    province_code,
    provinces,
)

__all__ = [
    "Region",
    "children",
    "city_code",
    "distance_km",
    "full_name",
    "get",
    "hierarchy",
    "is_valid_code",
    "nearest_county",
    "province_code",
    "provinces",
]
