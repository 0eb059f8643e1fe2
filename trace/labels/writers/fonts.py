"""CJK fonts for the PDF and PNG writers.

Choice (documented in the issue's closing note): embed a TrueType CJK font so a PDF
renders the same everywhere, and render PNG text with the same face. The preferred face
is *WenQuanYi Zen Hei Mono* (Debian ``fonts-wqy-zenhei``, installed by CI): free to embed,
and monospaced -- ideographs 1 em, Latin 0.5 em -- which is exactly the width model
``content.display_width`` uses to fit lines, so the fit is right without measuring.

Lookup order: the profile's ``[render] font``, the environment variable
``TRACE_CJK_FONT`` (``path`` or ``path#index`` for a collection), then the usual system
locations. If none is found the PDF writer falls back to reportlab's built-in CID font
``STSong-Light`` (Adobe-GB1, *not* embedded: the viewer substitutes a local Song face),
and the PNG writer raises ``FontNotFoundError`` (Pillow cannot draw CJK without a font).

For the PDF, the font is embedded as one simple TrueType subset (<= 256 glyphs) built with
reportlab's subsetter: codes 32..126 are ASCII itself (so per-label code text and serials
go into the content stream unchanged), the other codes hold the run's non-ASCII
characters. A ToUnicode CMap keeps the text extractable (``pdftotext``).
"""

from __future__ import annotations

import hashlib
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "FontNotFoundError",
    "FontRef",
    "PdfFontSubset",
    "find_cjk_font",
]

ENV_VAR = "TRACE_CJK_FONT"

# (path, index in a .ttc collection). Zen Hei's collection: 0 proportional, 1 Mono.
CANDIDATES: tuple[tuple[str, int], ...] = (
    ("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", 1),
    ("/usr/share/fonts/wqy-zenhei/wqy-zenhei.ttc", 1),
    ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", 1),
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", 2),
    ("/System/Library/Fonts/STHeiti Light.ttc", 0),
    ("C:/Windows/Fonts/simhei.ttf", 0),
)


class FontNotFoundError(RuntimeError):
    """No CJK TrueType font could be found to render Chinese text."""


@dataclass(frozen=True)
class FontRef:
    path: str
    index: int


def _parse(spec: str) -> FontRef:
    path, _, index = spec.partition("#")
    return FontRef(path, int(index) if index else 0)


def find_cjk_font(profile_font: str | None = None) -> FontRef | None:
    """The CJK font to use, or ``None`` if there is none on this machine."""
    for spec in (profile_font, os.environ.get(ENV_VAR)):
        if spec:
            ref = _parse(spec)
            if not Path(ref.path).is_file():
                raise FontNotFoundError(f"CJK font {ref.path!r} does not exist")
            return ref
    for path, index in CANDIDATES:
        if Path(path).is_file():
            return FontRef(path, index)
    return None


def require_cjk_font(profile_font: str | None = None) -> FontRef:
    ref = find_cjk_font(profile_font)
    if ref is None:
        raise FontNotFoundError(
            "no CJK TrueType font found for Chinese label text: install fonts-wqy-zenhei "
            f"(apt) or set {ENV_VAR}=/path/to/font.ttc#index"
        )
    return ref


def _num(value: float) -> str:
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


class PdfFontSubset:
    """One embedded TrueType subset: ASCII at its own codes + up to 160 other characters."""

    MAX_EXTRA = 31 + 129  # codes 1..31 and 127..255

    def __init__(self, ref: FontRef, extra_chars: str):
        from reportlab.pdfbase.ttfonts import TTFontFace

        self.face = TTFontFace(ref.path, subfontIndex=ref.index)
        others = sorted({ch for ch in extra_chars if not 32 <= ord(ch) <= 126})
        if len(others) > self.MAX_EXTRA:
            raise ValueError(
                f"label text uses {len(others)} distinct non-ASCII characters; "
                f"at most {self.MAX_EXTRA} fit one embedded font subset"
            )
        free = [*range(1, 32), *range(127, 256)]
        self.codes: dict[str, int] = {chr(c): c for c in range(32, 127)}
        self.codes.update({ch: free[i] for i, ch in enumerate(others)})
        # subset[code] = unicode code point (0 -> .notdef) as reportlab's subsetter expects
        self.subset = [0] * 256
        for ch, code in self.codes.items():
            self.subset[code] = ord(ch) if ord(ch) in self.face.charToGlyph else 0
        digest = hashlib.sha1("".join(sorted(self.codes)).encode()).digest()
        tag = "".join(chr(65 + b % 26) for b in digest[:6])
        self.base_name = f"{tag}+{self.face.name.decode('latin-1')}"

    def encode(self, text: str) -> bytes:
        """``text`` as a PDF hex string in this subset's codes (unknown -> .notdef)."""
        return b"<" + bytes(self.codes.get(ch, 0) for ch in text).hex().upper().encode() + b">"

    def objects(self, font_num: int) -> list[tuple[int, bytes, bytes | None]]:
        """``(object number, dictionary, stream data or None)`` for the font objects.

        Uses numbers ``font_num`` .. ``font_num + 3``; ``font_num`` is the /Font.
        """
        desc, file_num, tounicode = font_num + 1, font_num + 2, font_num + 3
        face = self.face
        widths = " ".join(_num(face.getCharWidth(u) if u else 0) for u in self.subset)
        font = (
            f"<< /Type /Font /Subtype /TrueType /BaseFont /{self.base_name} "
            f"/FirstChar 0 /LastChar 255 /Widths [{widths}] "
            f"/FontDescriptor {desc} 0 R /ToUnicode {tounicode} 0 R >>"
        ).encode("ascii")
        bbox = " ".join(_num(v) for v in face.bbox)
        # Symbolic (flag 4): the glyphs are addressed through the subset's own cmap.
        descriptor = (
            f"<< /Type /FontDescriptor /FontName /{self.base_name} /Flags 4 "
            f"/FontBBox [{bbox}] /ItalicAngle {_num(face.italicAngle)} "
            f"/Ascent {_num(face.ascent)} /Descent {_num(face.descent)} "
            f"/CapHeight {_num(face.capHeight)} /StemV {face.stemV} "
            f"/MissingWidth {_num(face.defaultWidth)} /FontFile2 {file_num} 0 R >>"
        ).encode("ascii")
        raw = face.makeSubset(self.subset)
        packed = zlib.compress(raw, 6)
        file_dict = f"<< /Length {len(packed)} /Length1 {len(raw)} /Filter /FlateDecode >>".encode()
        cmap = _to_unicode_cmap({code: ch for ch, code in self.codes.items()})
        cmap_dict = f"<< /Length {len(cmap)} >>".encode()
        return [
            (font_num, font, None),
            (desc, descriptor, None),
            (file_num, file_dict, packed),
            (tounicode, cmap_dict, cmap),
        ]


def _to_unicode_cmap(mapping: dict[int, str]) -> bytes:
    entries = [
        f"<{code:02X}> <{ord(ch):04X}>" for code, ch in sorted(mapping.items()) if ord(ch) <= 0xFFFF
    ]
    blocks = []
    for i in range(0, len(entries), 100):  # at most 100 entries per bfchar block
        part = entries[i : i + 100]
        blocks.append(f"{len(part)} beginbfchar\n" + "\n".join(part) + "\nendbfchar")
    return (
        "/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n"
        "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n"
        "/CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n"
        "1 begincodespacerange\n<00> <FF>\nendcodespacerange\n"
        + "\n".join(blocks)
        + "\nendcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n"
    ).encode("ascii")
