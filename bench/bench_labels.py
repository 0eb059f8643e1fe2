"""Label generation benchmark: 300,000 labels per format, end to end (DESIGN.md §5).

    python bench/bench_labels.py [--count 300000] [--formats zpl tspl pdf ...]

Each format runs in its own subprocess so that peak RSS (the child's own ``ru_maxrss``) is
per format. A child mints the codes (AES + base32, chunk by chunk), optionally records the
run (``--record-hook``, see below) and writes the file under ``bench/out/``; it reports
the in-process time (mint + record + write, imports excluded) and the parent also reports
the whole subprocess wall time (interpreter start and imports included). Files are
deleted afterwards unless ``--keep`` (a PNG zip of 300k labels is ~0.9 GB).

Then, if present, ``bench/bench_encoder.py``'s ``run(count)`` is called for the batch QR
encoder comparison (libqrencode via ctypes, python-qrcode), and a short experiment compares
the two ways of drawing a QR in the PDF (1-bit image vs merged vector runs).

Record-the-run hook: ``--record-hook package.module:function`` is imported in the child
and called as ``function(run_info: dict)`` after minting starts and before the file is
written, inside the timed section -- the place for the lead's "insert one LabelRun row"
step. Without it nothing touches a database.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import itertools
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from anywhere: the checkout must shadow stdlib `trace`
    sys.path.insert(0, str(ROOT))

OUT_DIR = ROOT / "bench" / "out"
BASE_URL = "https://t.example.cn/q"
BENCH_KEYS = "0:000102030405060708090a0b0c0d0e0f"  # a fixed, public benchmark key

DEFAULT_PROFILES = {
    "zpl": "zpl-203dpi-40x30",
    "tspl": "tspl-203dpi-40x30",
    "zpl-raster": "zpl-203dpi-40x30",
    "tspl-raster": "tspl-203dpi-40x30",
    "pdf": "a4-sheet-5x13",
    "png": "png-300dpi-40x30",
}
# Issue #3 targets for 300,000 labels: (seconds, MB of peak RSS or None)
TARGETS: dict[str, tuple[float, float | None]] = {
    "zpl": (1.5, 150.0),
    "tspl": (1.5, 150.0),
    "zpl-raster": (20.0, None),
    "tspl-raster": (20.0, None),
    "pdf": (20.0, None),
    "png": (30.0, None),
}


def _content() -> Any:
    from trace.labels.content import LabelContent

    return LabelContent(
        lines=[
            ("product", "华宁柑桔"),
            ("batch", "HN-2026-001"),
            ("producer", "华宁县柑桔专业合作社"),
            ("harvest_date", "2026-11-20"),
        ],
    )


# -- child: one format --------------------------------------------------------------------


def run_child(fmt: str, profile_name: str, count: int, path: Path, record_hook: str | None) -> None:
    from trace.crypto.keyring import Keyring
    from trace.labels.content import iter_chunks
    from trace.labels.profiles import load_profile
    from trace.labels.writers import write_labels

    hook = None
    if record_hook:
        module, _, func = record_hook.partition(":")
        hook = getattr(importlib.import_module(module), func)
    profile = load_profile(profile_name)
    content = _content()
    keyring = Keyring.from_text(BENCH_KEYS)

    start = time.perf_counter()
    run_id, first_serial = 1, 1
    if hook is not None:
        # Record the run (one LabelRun row, committed) before minting: the codes carry
        # the run id the database handed out. Inside the timed part.
        recorded = hook(
            {"count": count, "format": fmt, "profile": profile_name, "keyring": keyring}
        )
        run_id, first_serial = recorded["run_id"], recorded["first_serial"]
    chunks = iter_chunks(keyring, run_id, first_serial, count, BASE_URL)
    with path.open("wb") as fh:
        written = write_labels(fmt, profile, content, chunks, fh)
    seconds = time.perf_counter() - start

    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "format": fmt,
                "profile": profile_name,
                "labels": written,
                "seconds": seconds,
                "cpu_seconds": usage.ru_utime + usage.ru_stime,
                "maxrss_mb": usage.ru_maxrss / 1024,  # Linux: kilobytes
                "bytes": path.stat().st_size,
            }
        )
    )


# -- parent -------------------------------------------------------------------------------


def run_format(
    fmt: str, profile: str, count: int, keep: bool, record_hook: str | None = None
) -> dict[str, Any]:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    from trace.labels.writers import file_extension

    path = OUT_DIR / f"labels-{fmt}.{file_extension(fmt)}"
    cmd = [sys.executable, __file__, "--child", fmt, profile, str(count), str(path)]
    if record_hook:
        cmd += ["--record-hook", record_hook]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{fmt} failed:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_seconds"] = wall
    if not keep:
        path.unlink(missing_ok=True)
    return result


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numpy

    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"numpy {numpy.__version__}, {platform.system()} {platform.release()}"
    )


def print_table(results: list[dict[str, Any]], count: int) -> None:
    base = next((r for r in results if r["format"] == "zpl"), results[0])
    print(f"\n{count:,} labels per format; machine: {machine()}\n")
    print(
        "| format | profile | in-process s | process s | labels/s | peak RSS MB | output MB "
        "| vs " + base["format"] + " | target (300k) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        secs, mb = TARGETS.get(r["format"], (float("nan"), None))
        scale = count / 300_000
        ok = r["seconds"] <= secs * scale and (mb is None or r["maxrss_mb"] <= mb)
        target = f"≤ {secs:g} s" + (f", ≤ {mb:g} MB" if mb else "")
        verdict = ("met" if ok else "MISSED") if count == 300_000 else "n/a (count ≠ 300k)"
        print(
            f"| {r['format']} | {r['profile']} | {r['seconds']:.2f} | {r['process_seconds']:.2f} "
            f"| {r['labels'] / r['seconds']:,.0f} | {r['maxrss_mb']:.0f} | {r['bytes'] / 1e6:.0f} "
            f"| {r['seconds'] / base['seconds']:.1f}x | {target}: {verdict} |"
        )


def pdf_qr_compare(count: int, sample: int = 20_000) -> None:
    """The PDF writer draws each QR as a 1-bit image; compare with vector rectangles
    (one ``re`` per horizontal run of dark modules), both Flate-compressed per page of 65."""
    import zlib

    import numpy as np

    from trace.crypto.keyring import Keyring
    from trace.labels.content import iter_chunks
    from trace.labels.qr_batch import encode_batch
    from trace.labels.writers.raster import HEX_TABLE

    keyring = Keyring.from_text(BENCH_KEYS)
    mats = [encode_batch(c.payloads, "M") for c in iter_chunks(keyring, 1, 1, sample, BASE_URL)]

    start = time.perf_counter()
    vec_bytes = runs = 0
    for m in mats:
        n, size, _ = m.shape
        padded = np.zeros((n, size, size + 2), dtype=np.int8)
        padded[:, :, 1:-1] = m
        edges = np.diff(padded, axis=2)
        starts, ends = np.argwhere(edges == 1), np.argwhere(edges == -1)
        widths = ends[:, 2] - starts[:, 2]
        runs += len(starts)
        ops = [
            f"{x} {size - 1 - y} {w} 1 re\n"
            for x, y, w in zip(
                starts[:, 2].tolist(), starts[:, 1].tolist(), widths.tolist(), strict=True
            )
        ]
        cuts = np.searchsorted(starts[:, 0], np.arange(0, n + 65, 65)).tolist()
        for a, b in itertools.pairwise(cuts):
            vec_bytes += len(zlib.compress("".join(ops[a:b]).encode(), 6))
    vector = time.perf_counter() - start

    start = time.perf_counter()
    img_bytes = 0
    for m in mats:
        n = m.shape[0]
        hexed = HEX_TABLE[np.packbits(m.astype(bool), axis=2)].reshape(n, -1)
        for p in range(0, n, 65):
            img_bytes += len(zlib.compress(hexed[p : p + 65].tobytes(), 6))
    image = time.perf_counter() - start

    k = count / sample
    print(
        f"\nPDF QR drawing, measured on {sample:,} symbols, extrapolated to {count:,}: "
        f"vector runs {vector * k:.1f} s / {vec_bytes * k / 1e6:.0f} MB "
        f"({runs / sample:.0f} rects per symbol), 1-bit image {image * k:.1f} s / "
        f"{img_bytes * k / 1e6:.0f} MB -> image is {vector / image:.1f}x faster (used)"
    )


def run_encoder_bench(count: int) -> None:
    path = ROOT / "bench" / "bench_encoder.py"
    if not path.is_file():
        print("\n(bench/bench_encoder.py not present: encoder comparison skipped)")
        return
    spec = importlib.util.spec_from_file_location("bench_encoder", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    print("\nBatch QR encoder (bench/bench_encoder.py):", flush=True)
    rows = module.run(count)
    formatter = getattr(module, "format_rows", None)
    if rows is not None:
        print(formatter(rows, count) if formatter else rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300_000)
    parser.add_argument("--formats", nargs="+", default=list(DEFAULT_PROFILES))
    parser.add_argument(
        "--profile",
        action="append",
        default=[],
        metavar="FORMAT=NAME",
        help="use another printer profile for a format",
    )
    parser.add_argument("--keep", action="store_true", help="keep the files in bench/out/")
    parser.add_argument("--no-encoder", action="store_true", help="skip bench_encoder.run()")
    parser.add_argument("--no-pdf-compare", action="store_true")
    parser.add_argument(
        "--record-hook",
        metavar="MODULE:FUNC",
        help="called with the run's details before writing (the DB 'record the run' step)",
    )
    parser.add_argument("--child", nargs=4, metavar=("FORMAT", "PROFILE", "COUNT", "PATH"))
    args = parser.parse_args(argv)

    if args.child:
        fmt, profile, count, path = args.child
        run_child(fmt, profile, int(count), Path(path), args.record_hook)
        return

    profiles = dict(DEFAULT_PROFILES)
    for item in args.profile:
        fmt, _, name = item.partition("=")
        profiles[fmt] = name
    unknown = [f for f in args.formats if f not in profiles]
    if unknown:
        parser.error(f"unknown formats: {', '.join(unknown)}")

    results = []
    for fmt in args.formats:
        print(f"{fmt} ({profiles[fmt]}): {args.count:,} labels ...", flush=True)
        results.append(run_format(fmt, profiles[fmt], args.count, args.keep, args.record_hook))
    print_table(results, args.count)
    if "pdf" in args.formats and not args.no_pdf_compare:
        pdf_qr_compare(args.count)
    if not args.no_encoder:
        run_encoder_bench(args.count)


if __name__ == "__main__":
    main()
