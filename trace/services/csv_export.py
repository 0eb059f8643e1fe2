"""Tables as CSV that Excel opens correctly.

Excel on a Chinese Windows reads a CSV without a byte-order mark as GBK and garbles UTF-8
text, so the file starts with the UTF-8 BOM. Rows end with CRLF and fields are quoted when
they hold a comma, a quote or a line break (RFC 4180). Text that Excel would take for a
formula (=, +, -, @, tab, CR at the start) gets a leading apostrophe: an enterprise name
like "=HYPERLINK(...)" must stay text (CSV injection).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from trace.services.analytics import Table

BOM = "\ufeff"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    text = str(value)
    if text.startswith(_FORMULA_START):
        return "'" + text
    return text


def rows_to_csv(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> bytes:
    buffer = io.StringIO()
    buffer.write(BOM)
    writer = csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow([_cell(h) for h in header])
    for row in rows:
        writer.writerow([_cell(v) for v in row])
    return buffer.getvalue().encode("utf-8")


def table_to_csv(table: Table, lang: str = "zh") -> bytes:
    """The table with headers in `lang` ("zh" or "en")."""
    keys = table.keys()
    return rows_to_csv(
        (c.label(lang) for c in table.columns),
        ([row.get(k) for k in keys] for row in table.rows),
    )


def filename(table: Table) -> str:
    """ASCII file name: the table's name and its date range."""
    span = ""
    if "from" in table.meta and "to" in table.meta:
        span = f"_{table.meta['from']}_{table.meta['to']}"
    region = table.meta.get("region") or ""
    return f"{table.name}{'_' + region if region else ''}{span}.csv"
