"""Trace-code cryptography: code scheme, keyring, IP hashing, audit hash chain.

Pure: imports neither Flask nor SQLAlchemy (DESIGN.md §2, §4).
"""

from trace.crypto.chain import GENESIS, canonical_json, chain_hash, verify_chain
from trace.crypto.codes import (
    CODE_LENGTH,
    CodeId,
    iter_mint,
    mint,
    mint_batch,
    parse,
    payload_prefix,
    payload_url,
)
from trace.crypto.iphash import IP_HASH_PURPOSE, client_ip_hash
from trace.crypto.keyring import Keyring, KeyringError, retire, rotate

__all__ = [
    "CODE_LENGTH",
    "GENESIS",
    "IP_HASH_PURPOSE",
    "CodeId",
    "Keyring",
    "KeyringError",
    "canonical_json",
    "chain_hash",
    "client_ip_hash",
    "iter_mint",
    "mint",
    "mint_batch",
    "parse",
    "payload_prefix",
    "payload_url",
    "retire",
    "rotate",
    "verify_chain",
]
