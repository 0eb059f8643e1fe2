"""Check characters of 统一社会信用代码 (GB 32100-2015), GTINs, and pesticide registration
numbers (农药登记证号)."""

from __future__ import annotations

import pytest

from trace.validation import (
    USCC_ALPHABET,
    gtin_check_digit,
    is_valid_gtin,
    is_valid_host,
    is_valid_pesticide_registration,
    is_valid_uscc,
    uscc_check_char,
)

# Bodies of plausible codes: registration authority, organisation type, region, then the
# organisation code. The check character is computed, then every wrong one is refused.
USCC_BODIES = [
    "91530424MA6K2LQ8X",  # company, Huaning county
    "93530424MA6K2LQ8X",  # farmers' co-operative
    "91530127MA6N3B7T2",  # company, Songming county
    "11100000000013127",  # a central government body
    "52530000MJ0000001",
]


@pytest.mark.parametrize("body", USCC_BODIES)
def test_uscc_with_its_check_character_is_valid(body: str) -> None:
    code = body + uscc_check_char(body)
    assert is_valid_uscc(code)
    for wrong in USCC_ALPHABET:
        if wrong != code[-1]:
            assert not is_valid_uscc(body + wrong), wrong


def test_uscc_check_character_by_hand() -> None:
    # Weighted sum by hand for an all-'0' body but one '1' in the first place: weight 1.
    assert uscc_check_char("10000000000000000") == USCC_ALPHABET[30]  # (31 - 1) % 31
    assert uscc_check_char("00000000000000000") == "0"
    # The 18th character may itself be a letter.
    letters = [uscc_check_char(b) for b in USCC_BODIES]
    assert all(c in USCC_ALPHABET for c in letters)


def test_full_width_digits_are_not_digits() -> None:
    body = "91５30424MA6K2LQ8X"  # a full-width 5 typed by an input method
    assert not is_valid_uscc(body + "0")
    assert not is_valid_gtin("４００６３８１３３３９３１")


@pytest.mark.parametrize(
    "code",
    [
        "",
        "91530424MA6K2LQ8X",  # 17 characters
        "91530424MA6K2LQ8XAA",  # 19 characters
        "91530424ma6k2lq8x" + "0",  # lower case
        "9153042AMA6K2LQ8X0",  # letter in the region digits
        "91530424MA6K2LQ8I0",  # I is not in the alphabet
        "91530424MA6K2LQ8O0",  # nor O
        "91530424MA6K2LQ8Z0",  # nor Z
        "91530424MA6K2LQ8S0",  # nor S
        "91530424MA6K2LQ8V0",  # nor V
    ],
)
def test_malformed_uscc(code: str) -> None:
    assert not is_valid_uscc(code)


@pytest.mark.parametrize(
    "code",
    [
        "4006381333931",  # GTIN-13 (EAN)
        "06901234567892",  # GTIN-14
        "6901234567892",  # GTIN-13 of a Chinese (690) prefix
        "036000291452",  # GTIN-12 (UPC-A)
        "96385074",  # GTIN-8
    ],
)
def test_valid_gtins(code: str) -> None:
    assert is_valid_gtin(code)
    assert gtin_check_digit(code[:-1]) == code[-1]


@pytest.mark.parametrize(
    "code",
    [
        "4006381333932",  # wrong check digit
        "4006381333930",
        "400638133393",  # 12 digits, wrong check digit for a UPC
        "40063813339311",  # 14 digits, wrong
        "400638133393a",
        "",
        "1234567",  # 7 digits: no such length
        "123456789012345",  # 15 digits
        " 4006381333931",
        "４００６３８１３３３９３１",  # full-width digits are not ASCII digits
    ],
)
def test_invalid_gtins(code: str) -> None:
    assert not is_valid_gtin(code)


def test_every_single_digit_error_is_caught() -> None:
    code = "4006381333931"
    for i in range(len(code)):
        for d in "0123456789":
            if d != code[i]:
                assert not is_valid_gtin(code[:i] + d + code[i + 1 :]), (i, d)


@pytest.mark.parametrize(
    "number", ["PD20080123", "PD20110856", "PDN20120012", "LS20120345", "WP20090123", "WL20140012"]
)
def test_pesticide_registration_numbers(number: str) -> None:
    assert is_valid_pesticide_registration(number)


@pytest.mark.parametrize(
    "number",
    [
        "",
        "XX123",
        "PD",
        "PD123",
        "pd20080123",
        "PD20080123 ",
        " PD20080123",
        "PD2008012345",
        "PD-20080123",
        "20080123",
        "PD２００８０１２３",  # full-width digits
        "PD20080123\n",
        "XY20080123",
        "PD84104",  # pre-2008 numbering carries no year: not a current registration
    ],
)
def test_malformed_pesticide_registration_numbers(number: str) -> None:
    assert not is_valid_pesticide_registration(number)


@pytest.mark.parametrize(
    "host",
    ["192.168.1.50", "::1", "fe80::1%eth0", "zebra-01.local", "PRN_LAB2", "打印机.local", "Y"],
)
def test_printer_hosts(host: str) -> None:
    assert is_valid_host(host)


@pytest.mark.parametrize(
    "host",
    ["a..b", ".", "", " printer", "-x", "x" * 64, "a/b", "a\x00b", "a b", "h" * 254],
)
def test_malformed_printer_hosts(host: str) -> None:
    # "a..b" and the 64-character label made the socket's IDNA encoder raise (a 500).
    assert not is_valid_host(host)
