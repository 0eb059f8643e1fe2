"""Pure checks of user input, no I/O: check characters of Chinese and GS1 identifiers,
text a database can store, redirect targets that stay on the site."""

from __future__ import annotations

import ipaddress
import re

# GB 32100-2015: 18 characters from this 31-character alphabet (no I, O, S, V, Z).
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
# [0-9], not \d: \d also matches full-width and other Unicode digits.
_USCC_SHAPE = re.compile(r"[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}")


def uscc_check_char(first17: str) -> str:
    total = sum(USCC_ALPHABET.index(c) * w for c, w in zip(first17, USCC_WEIGHTS, strict=True))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def is_valid_uscc(code: str) -> bool:
    """统一社会信用代码 with a correct check character (the 18th)."""
    if not _USCC_SHAPE.fullmatch(code):
        return False
    return uscc_check_char(code[:17]) == code[17]


def gtin_check_digit(body: str) -> str:
    # Weights 3,1,3,... from the right of the body (the digit left of the check digit gets 3).
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return str((10 - total % 10) % 10)


def is_valid_gtin(code: str) -> bool:
    """GTIN-8/12/13/14 with a correct mod-10 check digit."""
    if not (code.isascii() and code.isdigit()) or len(code) not in (8, 12, 13, 14):
        return False
    return gtin_check_digit(code[:-1]) == code[-1]


# 农药登记证号: PD (正式), PDN, WP (卫生用), LS (临时), WL; then year and serial digits.
PESTICIDE_REGISTRATION = re.compile(r"(PD|PDN|WP|WL|LS)[0-9]{6,8}")


def is_valid_pesticide_registration(number: str) -> bool:
    return bool(PESTICIDE_REGISTRATION.fullmatch(number))


# A host name label (RFC 1123: letters, digits, inner hyphens; at most 63 characters), plus
# the underscore that Windows-named printers carry and resolvers pass through.
_HOST_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


def is_valid_host(host: str) -> bool:
    """An IP address, or a host name a resolver can be asked about (IDN allowed).

    Checked before connecting because the socket layer's IDNA encoder raises UnicodeError,
    not a socket error, for names like "a..b" or a 64-character label."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    try:
        ascii_name = host.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    labels = ascii_name.removesuffix(".").split(".")
    return len(ascii_name) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels)


def is_storable_text(text: str) -> bool:
    """No NUL (PostgreSQL refuses it, also in a query) and no lone surrogate (not UTF-8)."""
    return "\x00" not in text and not any("\ud800" <= ch <= "\udfff" for ch in text)


def is_local_path(target: str) -> bool:
    """A redirect target on this site only: an open redirect would help phishing. Browsers
    read a backslash as a slash ("/\\evil.example" leaves the site), and a control
    character (CR LF) cannot go into a Location header at all."""
    return (
        target.startswith("/")
        and not target.startswith("//")
        and "\\" not in target
        and not any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in target)
    )
