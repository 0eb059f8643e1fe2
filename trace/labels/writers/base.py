"""Shared machinery of the label writers.

The thermal-printer writers are string work that must run at hundreds of thousands of
labels per second, so nothing is formatted per label: a label is a *fixed-width record*
of static byte pieces (rendered once per run) and per-label fields (payload, code text,
serial digits). ``RecordTemplate.render`` fills a ``(labels, record_bytes)`` uint8 matrix
with numpy (static pieces broadcast, fields copied column-wise) and returns it as one
``bytes`` object per chunk. Fields whose width varies (serial digit count, a payload
shorter than its dtype) are handled by splitting a chunk into runs of equal widths.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import BinaryIO, Protocol

import numpy as np

from trace.labels.content import LabelChunk, LabelContent
from trace.labels.profiles import FORMATS, PrinterProfile

__all__ = [
    "FORMATS",
    "FormatError",
    "LabelWriter",
    "RecordTemplate",
    "UnsafeDataError",
    "ascii_matrix",
    "check_format",
    "digits_matrix",
    "uniform_runs",
]


class FormatError(ValueError):
    """Unknown output format, or one the printer profile does not support."""


class UnsafeDataError(ValueError):
    """Per-label data contains a byte that would break the printer language's syntax."""


class LabelWriter(Protocol):
    def __call__(
        self,
        profile: PrinterProfile,
        content: LabelContent,
        chunks: Iterable[LabelChunk],
        out: BinaryIO,
    ) -> int: ...


def check_format(fmt: str, profile: PrinterProfile) -> None:
    if fmt not in FORMATS:
        raise FormatError(f"unknown label format {fmt!r} (known: {', '.join(FORMATS)})")
    if not profile.supports(fmt):
        raise FormatError(
            f"printer profile {profile.name!r} ({profile.language}) does not support the "
            f"{fmt!r} format (it supports: {', '.join(profile.formats)})"
        )


# -- per-label fields as uint8 matrices ---------------------------------------------------


def ascii_matrix(values: np.ndarray) -> np.ndarray:
    """An ``S<n>`` array as an ``(len, n)`` uint8 matrix (a view when possible)."""
    values = np.ascontiguousarray(values)
    n, width = len(values), values.dtype.itemsize
    return values.view(np.uint8).reshape(n, width)


def byte_lengths(values: np.ndarray) -> np.ndarray:
    """Lengths of ``S<n>`` items (numpy pads shorter items with NUL bytes)."""
    m = ascii_matrix(values)
    if m.shape[1] == 0:
        return np.zeros(len(values), dtype=np.int64)
    if m[:, -1].all():  # fast path: every item uses the full width
        return np.full(len(values), m.shape[1], dtype=np.int64)
    return np.char.str_len(values).astype(np.int64)


_POW10 = 10 ** np.arange(1, 20, dtype=np.uint64)


def digit_counts(values: np.ndarray) -> np.ndarray:
    """Number of decimal digits of each non-negative integer."""
    v = np.asarray(values).astype(np.uint64)
    return np.searchsorted(_POW10, v, side="right").astype(np.int64) + 1


def digits_matrix(values: np.ndarray, width: int) -> np.ndarray:
    """Non-negative integers as ``(len, width)`` ASCII digits (zero-padded on the left)."""
    v = np.asarray(values).astype(np.uint64)
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.uint64)
    return ((v[:, None] // powers) % 10 + 48).astype(np.uint8)


def uniform_runs(*widths: np.ndarray) -> Iterator[slice]:
    """Slices over which every width array is constant, in order."""
    n = len(widths[0])
    if n == 0:
        return
    change = np.zeros(n, dtype=bool)
    for w in widths:
        if w[0] != w[-1] or not (w == w[0]).all():
            change[1:] |= w[1:] != w[:-1]
    cuts = [0, *np.flatnonzero(change).tolist(), n]
    for a, b in itertools.pairwise(cuts):
        yield slice(a, b)


# -- fixed-width records ------------------------------------------------------------------


@dataclass(frozen=True)
class _Piece:
    static: bytes | None
    field: str | None


class RecordTemplate:
    """A label as static byte pieces interleaved with named per-label fields.

    ``RecordTemplate([b"^XA^FO10,10^FD", "payload", b"^FS^XZ"])``; ``render`` takes
    ``{"payload": uint8 matrix (labels, width)}`` and returns all labels' bytes.
    """

    def __init__(self, parts: Sequence[bytes | str]):
        merged: list[_Piece] = []
        for part in parts:
            last = merged[-1].static if merged else None
            if isinstance(part, str):
                merged.append(_Piece(None, part))
            elif last is not None:
                merged[-1] = _Piece(last + part, None)  # adjacent static bytes: one piece
            elif part:
                merged.append(_Piece(part, None))
        self._pieces = tuple(merged)
        self._static = [
            np.frombuffer(p.static, dtype=np.uint8) if p.static is not None else None
            for p in self._pieces
        ]
        self.fields = tuple(p.field for p in self._pieces if p.field is not None)

    def render(self, count: int, fields: Mapping[str, np.ndarray]) -> bytes:
        columns = [
            static if static is not None else fields[str(p.field)]
            for p, static in zip(self._pieces, self._static, strict=True)
        ]
        widths = [c.shape[-1] for c in columns]
        buf = np.empty((count, sum(widths)), dtype=np.uint8)
        pos = 0
        for column, width in zip(columns, widths, strict=True):
            buf[:, pos : pos + width] = column  # a static piece broadcasts over the labels
            pos += width
        return buf.tobytes()


def check_bytes(matrix: np.ndarray, forbidden: bytes, what: str, language: str) -> None:
    """Raise ``UnsafeDataError`` if ``matrix`` contains any of ``forbidden``."""
    if matrix.size and np.isin(matrix, np.frombuffer(forbidden, dtype=np.uint8)).any():
        raise UnsafeDataError(
            f"{what} contains a character that {language} cannot carry "
            f"({', '.join(repr(chr(b)) for b in forbidden)})"
        )


def render_chunk(
    template: RecordTemplate,
    chunk: LabelChunk,
    extra: Mapping[str, np.ndarray] | None = None,
) -> bytes:
    """All labels of ``chunk`` through ``template``.

    Field names: ``payload``; ``code`` (the whole code text) or ``code:<start>:<stop>``
    (a slice of it); ``serial`` (decimal digits, no padding); any name in ``extra``, a
    matrix with one row per label of the chunk (e.g. a raster QR).
    """
    n = len(chunk)
    if n == 0:
        return b""
    extra = extra or {}
    pay_len = byte_lengths(chunk.payloads)
    code_len = byte_lengths(chunk.codes)
    ser_len = digit_counts(chunk.serials)
    pay = ascii_matrix(chunk.payloads)
    codes = ascii_matrix(chunk.codes)
    out: list[bytes] = []
    for run in uniform_runs(pay_len, code_len, ser_len):
        k = run.stop - run.start
        fields: dict[str, np.ndarray] = {}
        for name in template.fields:
            if name in extra:
                fields[name] = extra[name][run]
            elif name == "payload":
                fields[name] = pay[run, : pay_len[run.start]]
            elif name == "serial":
                fields[name] = digits_matrix(chunk.serials[run], int(ser_len[run.start]))
            elif name.startswith("code"):
                c = codes[run, : code_len[run.start]]
                if name == "code":
                    fields[name] = c
                else:
                    _, a, b = name.split(":")
                    fields[name] = c[:, int(a) : int(b)]
            else:
                raise KeyError(f"unknown template field {name!r}")
        out.append(template.render(k, fields))
    return b"".join(out)
