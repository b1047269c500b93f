"""The pure identifier, text and length checks (shared by the CSV formats and SCIM)."""

from __future__ import annotations

import email_validator
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flask_csvdirectory.validation import (
    LookalikeIndex,
    ProblemCode,
    check_email,
    check_identifier,
    check_length,
    find_control,
    find_invisible,
    find_mixed_script,
    normalize_text,
    skeleton,
)

pytestmark = pytest.mark.safeguards

INVISIBLES = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u202e", "\u2066",
              "\u180e", "\u3164", "\u034f", "\ufe0f", "\x00", "\x1b", "\u2028", "\u00a0"]


@pytest.mark.parametrize("character", INVISIBLES)
@pytest.mark.parametrize("where", ["end", "middle", "start"])
def test_email_with_an_invisible_character_names_its_code_point(character: str, where: str) -> None:
    email = "admin@example.com"
    value = {"end": email + character, "middle": "ad" + character + "min@example.com",
             "start": character + email}[where]
    checked = check_email(value)
    assert not checked.ok
    assert checked.problem is not None
    assert checked.problem.code is ProblemCode.INVISIBLE
    code_point = f"U+{ord(character):04X}"
    assert checked.problem.code_point == code_point
    assert code_point in checked.problem.message
    expected_position = {"end": len(email) + 1, "middle": 3, "start": 1}[where]
    assert checked.problem.position == expected_position
    assert f"position {expected_position}" in checked.problem.message


def test_valid_emails_come_back_lower_cased_and_nfc() -> None:
    assert check_email("Admin@Example.COM").value == "admin@example.com"
    decomposed = "Jose\u0301@example.com"
    checked = check_email(decomposed)
    assert checked.ok
    assert checked.value == "jos\u00e9@example.com"
    assert check_email("иван@пример.рф").ok  # one script per part
    assert check_email("иван@example.com").ok  # a Cyrillic mailbox at a Latin domain


@pytest.mark.parametrize(
    "value",
    ["plainaddress", "a@b", "a b@example.com", "bad@@example.com", "x@localhost",
     "x@host.test", "x@123.456", ".a@example.com", "a..b@example.com", "a" * 65 + "@example.com",
     "x@" + "a" * 250 + ".com"],
)
def test_invalid_email_syntax_is_email_validators_verdict(value: str) -> None:
    checked = check_email(value)
    assert checked.problem is not None
    assert checked.problem.code is ProblemCode.INVALID_EMAIL
    assert "not a valid email address" in checked.problem.message


def test_cyrillic_lookalike_letter_is_mixed_script() -> None:
    checked = check_email("\u0430dmin@example.com")  # Cyrillic a
    assert checked.problem is not None
    assert checked.problem.code is ProblemCode.MIXED_SCRIPT
    assert checked.problem.code_point == "U+0430"
    assert "Cyrillic and Latin" in checked.problem.message


def test_full_width_letters_are_refused_with_the_plain_form() -> None:
    checked = check_email("\uff41dmin@example.com")
    assert checked.problem is not None
    assert checked.problem.code is ProblemCode.COMPATIBILITY
    assert "write 'a' instead" in checked.problem.message


def test_email_length_limit() -> None:
    assert check_email("ab@example.com", max_length=14).ok
    problem = check_email("abc@example.com", max_length=14).problem
    assert problem is not None and problem.code is ProblemCode.TOO_LONG
    assert "15 characters" in problem.message and "at most 14" in problem.message


@settings(max_examples=300, deadline=None)
@given(
    st.from_regex(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,70}@[A-Za-z0-9.-]{1,20}", fullmatch=True)
)
def test_ascii_fast_path_agrees_with_email_validator(value: str) -> None:
    try:
        email_validator.validate_email(value, check_deliverability=False, strict=True)
        valid = True
    except email_validator.EmailNotValidError:
        valid = False
    assert check_email(value).ok is valid


def test_identifier_checks() -> None:
    assert check_identifier("E1001").value == "E1001"
    assert check_identifier("E-1001 b").ok
    problem = check_identifier("E1001\u200b").problem
    assert problem is not None and problem.code_point == "U+200B"
    problem = check_identifier("E\uff11001").problem
    assert problem is not None and problem.code is ProblemCode.COMPATIBILITY
    problem = check_identifier("\u0415100").problem  # Cyrillic E then digits: one script
    assert problem is None
    problem = check_identifier("\u0415A100").problem
    assert problem is not None and problem.code is ProblemCode.MIXED_SCRIPT
    problem = check_identifier("E" * 11, max_length=10).problem
    assert problem is not None and problem.code is ProblemCode.TOO_LONG


def test_names_and_titles_are_nfc_and_refuse_control_characters() -> None:
    assert normalize_text("Caf" + "e\u0301").value == "Caf\u00e9"
    assert normalize_text("Zo\u00eb \u200dJoiner").ok  # joiners are allowed in names
    for bad in ["Ana\tlyst", "line\nbreak", "a\x00b", "x\u2028y", "evil\u202etxt.exe"]:
        problem = normalize_text(bad).problem
        assert problem is not None and problem.code is ProblemCode.CONTROL, bad
        assert problem.code_point is not None and problem.code_point in problem.message
    problem = normalize_text("x" * 6, max_length=5).problem
    assert problem is not None and problem.code is ProblemCode.TOO_LONG
    assert find_control("Analyst") is None


def test_single_rules() -> None:
    assert find_invisible("plain value") is None
    assert find_invisible("caf\u00e9") is None
    assert check_length("abc", 3) is None
    assert check_length("abc", None) is None
    assert check_length("abcd", 3) is not None
    assert find_mixed_script("\u6f22\u5b57\u3072\u3089\u30ab\u30bf") is None  # Han + kana
    assert find_mixed_script("Stra\u00dfe") is None
    assert find_mixed_script("p\u0430ypal") is not None


def test_skeleton_and_lookalike_index_name_the_imitated_identifier() -> None:
    assert skeleton("\u0440\u0430\u0443\u0440\u0430l") == "paypal"
    assert skeleton("Plain") == "plain"
    index = LookalikeIndex({"admin@example.com": 1}.keys())
    assert index.find("admin@example.com") is None  # the same identifier
    assert index.find("other@example.com") is None  # different plain ASCII never collides
    # a whole-Cyrillic mailbox is not mixed-script, but looks exactly like the known one
    cyrillic = "\u0430d\u043c\u0456n@example.com".replace("\u043c", "m")
    assert index.find(cyrillic) == "admin@example.com"
    problem = index.check(cyrillic)
    assert problem is not None and problem.code is ProblemCode.LOOKALIKE
    assert "admin@example.com" in problem.message and problem.other == "admin@example.com"
    # identifiers added later are known too, both ways round
    index.add("\u0441\u0430\u0441\u0435@example.com")  # Cyrillic "cace"
    assert index.find("cace@example.com") == "\u0441\u0430\u0441\u0435@example.com"
