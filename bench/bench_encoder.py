"""Batch QR encoder benchmark: trace.labels.qr_batch against its peers, in one run.

    python bench/bench_encoder.py [--count 300000] [--libqrencode-sample N] [--qrcode-sample 2000]

Peers, all fed the same product-shaped payloads (an upper-case URL, one alphanumeric
segment, version and ECC level as the batch encoder picks them):
- libqrencode 4 through ctypes (Debian package libqrencode4), one QRcode_encodeString call
  per code, on all N codes unless --libqrencode-sample is given (then extrapolated);
- python-qrcode, measured on a 2,000-code sample and extrapolated to N.
ratio = peer seconds / batch encoder seconds (how many times faster the batch encoder is).
Peak memory of the batch encoder is the tracemalloc peak while it streams all N matrices
(numpy buffers are traced), measured in a second pass so the timing pass is not slowed.

`run(count)` returns the rows so bench/bench_labels.py can print them with its own.
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import random
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: the checkout root must shadow stdlib `trace`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trace.labels.qr_batch import alnum_version_for, iter_encoded

PREFIX = "HTTPS://T.EXAMPLE.CN/Q/"
ECC = "M"
_QRENCODE_LEVEL = {"L": 0, "M": 1, "Q": 2, "H": 3}
_QR_MODE_8 = 2  # hint; with casesensitive=1 libqrencode splits the text into the best modes


def make_payloads(count: int, seed: int = 0) -> list[str]:
    """URLs like the minted ones: key version character + base32 of a 16-byte block."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        block = rng.getrandbits(128).to_bytes(16, "big")
        code = "1" + base64.b32encode(block).decode("ascii").rstrip("=")
        out.append(PREFIX + code)
    return out


def time_batch_encoder(payloads: list[str], version: int) -> tuple[float, float]:
    """(wall seconds, peak traced MiB) to stream every matrix of the run."""
    for _ in iter_encoded(payloads[:2048], ECC, version):  # build the cached plan
        pass
    start = time.perf_counter()
    n = 0
    for chunk in iter_encoded(payloads, ECC, version):
        n += len(chunk)
    seconds = time.perf_counter() - start
    assert n == len(payloads)
    tracemalloc.start()
    try:
        for _ in iter_encoded(payloads, ECC, version):
            pass
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return seconds, peak / 2**20


class _QRcode(ctypes.Structure):
    _fields_ = (
        ("version", ctypes.c_int),
        ("width", ctypes.c_int),
        ("data", ctypes.POINTER(ctypes.c_ubyte)),
    )


def _libqrencode() -> Any:
    lib = ctypes.CDLL("libqrencode.so.4")
    lib.QRcode_encodeString.restype = ctypes.POINTER(_QRcode)
    lib.QRcode_encodeString.argtypes = (
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
    )
    lib.QRcode_free.argtypes = (ctypes.POINTER(_QRcode),)
    lib.QRcode_free.restype = None
    return lib


def time_libqrencode(payloads: list[str], version: int) -> float:
    lib = _libqrencode()
    encode, free = lib.QRcode_encodeString, lib.QRcode_free
    level = _QRENCODE_LEVEL[ECC]
    data = [p.encode("ascii") for p in payloads]
    probe = encode(data[0], version, level, _QR_MODE_8, 1)
    if not probe or probe.contents.version != version:
        raise RuntimeError("libqrencode did not produce the expected version")
    free(probe)
    start = time.perf_counter()
    for d in data:
        free(encode(d, version, level, _QR_MODE_8, 1))
    return time.perf_counter() - start


def time_python_qrcode(payloads: list[str], version: int) -> float:
    import qrcode
    import qrcode.util

    level = {"L": 1, "M": 0, "Q": 3, "H": 2}[ECC]
    start = time.perf_counter()
    for p in payloads:
        q = qrcode.QRCode(version=version, error_correction=level, border=0)
        q.add_data(qrcode.util.QRData(p, mode=qrcode.util.MODE_ALPHA_NUM))
        q.make(fit=False)
        q.get_matrix()
    return time.perf_counter() - start


def run(
    count: int = 300_000, libqrencode_sample: int | None = None, qrcode_sample: int = 2_000
) -> list[dict[str, Any]]:
    """Rows: name, codes (measured), seconds (for `count` codes, extrapolated if sampled),
    per_code_us, ratio (seconds / batch encoder seconds), peak_mib (batch encoder only),
    note."""
    payloads = make_payloads(count)
    version = alnum_version_for(len(payloads[0]), ECC)
    ours, peak = time_batch_encoder(payloads, version)
    rows: list[dict[str, Any]] = [
        {
            "name": "batch encoder (numpy, streamed)",
            "codes": count,
            "seconds": ours,
            "per_code_us": ours / count * 1e6,
            "ratio": 1.0,
            "peak_mib": peak,
            "note": f"version {version}-{ECC}, {len(payloads[0])} chars, all 8 masks scored",
        }
    ]
    peers = []
    n_lib = min(count, libqrencode_sample or count)
    try:
        peers.append(
            ("libqrencode 4 via ctypes", n_lib, time_libqrencode(payloads[:n_lib], version))
        )
    except OSError as exc:  # libqrencode4 not installed
        rows.append({"name": "libqrencode 4 via ctypes", "codes": 0, "seconds": float("nan"),
                     "per_code_us": float("nan"), "ratio": float("nan"), "peak_mib": None,
                     "note": f"not available: {exc}"})  # fmt: skip
    n_py = min(count, qrcode_sample)
    peers.append(("python-qrcode", n_py, time_python_qrcode(payloads[:n_py], version)))
    for name, measured, seconds in peers:
        per_code = seconds / measured
        total = per_code * count
        rows.append(
            {
                "name": name,
                "codes": measured,
                "seconds": total,
                "per_code_us": per_code * 1e6,
                "ratio": total / ours,
                "peak_mib": None,
                "note": "measured on all codes"
                if measured == count
                else f"measured on {measured:,} codes, extrapolated",
            }
        )
    return rows


def format_rows(rows: list[dict[str, Any]], count: int) -> str:
    lines = [
        f"QR matrices for {count:,} codes (one process, one thread)",
        f"{'encoder':34} {'seconds':>9} {'us/code':>9} {'ratio':>8} {'peak MiB':>9}  note",
    ]
    for r in rows:
        peak = f"{r['peak_mib']:.1f}" if r["peak_mib"] is not None else "-"
        lines.append(
            f"{r['name']:34} {r['seconds']:9.2f} {r['per_code_us']:9.2f} "
            f"{r['ratio']:7.1f}x {peak:>9}  {r['note']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300_000)
    parser.add_argument("--libqrencode-sample", type=int, default=None)
    parser.add_argument("--qrcode-sample", type=int, default=2_000)
    args = parser.parse_args(argv)
    rows = run(args.count, args.libqrencode_sample, args.qrcode_sample)
    print(format_rows(rows, args.count))


if __name__ == "__main__":
    main()
