"""Keyed hash of client IP addresses: scans are linkable per client, raw IPs never stored.

Why keyed (HMAC) and not a plain hash: the whole IPv4 space is 2^32 addresses, so an
unkeyed SHA-256 of an address is reversed by hashing every address (minutes on a laptop);
the same holds for the populated parts of IPv6. With HMAC under a secret key (derived
from the keyring: ``keyring.derive(IP_HASH_PURPOSE)``), the stored value is useless
without the key, which lives outside the database like the code keys.

Addresses are normalised first (``ipaddress``: compressed IPv6, IPv4-mapped IPv6 as
IPv4), so one client gives one hash however the proxy wrote its address. The digest is
truncated to 128 bits (32 hex characters): plenty to tell clients apart, shorter rows.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re

__all__ = ["IP_HASH_HEX_LENGTH", "IP_HASH_PURPOSE", "client_ip_hash", "normalise_ip"]

IP_HASH_PURPOSE = "client-ip-hash"
IP_HASH_HEX_LENGTH = 32


#: A dotted-quad IPv4 address already in canonical form (no leading zeros): what a
#: server sees for almost every client, answered without building an ``ipaddress`` object.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"  # ASCII digits only
_CANONICAL_IPV4 = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}")


def normalise_ip(ip: str) -> str:
    """Canonical text of an address; anything unparseable is only stripped and lowered."""
    text = ip.strip()
    if _CANONICAL_IPV4.fullmatch(text):
        return text
    return _normalise_any(text)


def _normalise_any(text: str) -> str:
    """Every form ``ipaddress`` knows (the fast path above is checked against this)."""
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return text.lower()
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def client_ip_hash(key: bytes, ip: str) -> str:
    """HMAC-SHA256 of the normalised address under ``key``, first 32 hex characters."""
    if len(key) < 16:
        raise ValueError("IP hash key must be at least 16 bytes")
    # hmac.digest: the one-shot C path (hmac.new builds a Python HMAC object per call).
    digest = hmac.digest(key, normalise_ip(ip).encode("utf-8"), hashlib.sha256)
    return digest.hex()[:IP_HASH_HEX_LENGTH]
