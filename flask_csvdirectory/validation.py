"""Checks of identifiers, names and lengths: pure functions, independent of CSV.

The CSV formats and SCIM use the same functions, so a value refused in a file is refused in a
SCIM request too. Every check returns a :class:`Checked` (the normalised value and at most one
:class:`Problem`) or a :class:`Problem` / ``None``; none raises for bad input.

- :func:`check_email`: no invisible or compatibility characters, syntax by ``email-validator``
  (syntax only, no DNS) after NFC normalisation, no mixed scripts, a length limit. Returns the
  address lower-cased, the form the directory matches emails in.
- :func:`check_identifier`: the same rules for any other identifier (an employee ID, an
  external id), without the email syntax.
- :func:`normalize_text`: names and titles: NFC, no control characters, a length limit.
- :func:`find_invisible`, :func:`find_control`, :func:`find_mixed_script`,
  :func:`check_length`: the single rules.
- :func:`skeleton` and :class:`LookalikeIndex`: "differs from another identifier only by
  look-alike characters" (Unicode TR39 confusables, from ``confusable_homoglyphs``).

Positions in messages are 1-based character positions, as a person counts them.
"""

from __future__ import annotations

import enum
import functools
import re
import unicodedata
from collections.abc import Collection, Iterable
from dataclasses import dataclass

import email_validator
from confusable_homoglyphs import categories as _scripts
from confusable_homoglyphs import confusables as _confusables

__all__ = [
    "Checked",
    "LookalikeIndex",
    "Problem",
    "ProblemCode",
    "check_email",
    "check_identifier",
    "check_length",
    "find_control",
    "find_invisible",
    "find_mixed_script",
    "normalize_text",
    "skeleton",
]

#: The longest address email-validator accepts (RFC 5321's path limit less the brackets).
EMAIL_MAX_LENGTH = 254


class ProblemCode(enum.StrEnum):
    """What is wrong with a value (stable codes for scripts and tests)."""

    INVISIBLE = "invisible_character"
    CONTROL = "control_character"
    COMPATIBILITY = "compatibility_character"
    INVALID_EMAIL = "invalid_email"
    MIXED_SCRIPT = "mixed_script"
    LOOKALIKE = "lookalike"
    TOO_LONG = "too_long"


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem of a value: a code, a sentence for people and, when one character is the
    cause, that character and its 1-based position. ``other`` is the identifier a look-alike
    imitates."""

    code: ProblemCode
    message: str
    character: str | None = None
    position: int | None = None
    other: str | None = None

    @property
    def code_point(self) -> str | None:
        """The offending character as ``U+200B``, when one character is the cause."""
        return None if self.character is None else _code_point(self.character)


@dataclass(frozen=True, slots=True)
class Checked:
    """A checked value: ``value`` is the normalised value (meaningful only when ``ok``)."""

    value: str
    problem: Problem | None = None

    @property
    def ok(self) -> bool:
        """Whether the value passed every check."""
        return self.problem is None


# -- single characters ------------------------------------------------------------------------

#: Categories never allowed in an identifier: controls, format characters (zero-width space,
#: joiners, BOM, bidirectional controls), line/paragraph separators, surrogates, private use and
#: unassigned code points.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
#: Default-ignorable code points of other categories: they render as nothing (combining grapheme
#: joiner, Hangul fillers, Khmer inherent vowels, Mongolian variation selectors, variation
#: selectors) or as a blank (braille blank).
_OTHER_INVISIBLE = frozenset(
    [0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180B, 0x180C, 0x180D, 0x180F, 0x2800, 0x3164,
     0xFFA0]
    + list(range(0xFE00, 0xFE10))
    + list(range(0xE0100, 0xE01F0))
)
#: Bidirectional embeddings, overrides and isolates: they reorder what is displayed.
_BIDI_CONTROLS = frozenset([*range(0x202A, 0x202F), *range(0x2066, 0x206A)])
#: Characters refused in names and titles besides the ``Cc``/``Zl``/``Zp``/``Cs`` categories:
#: bidirectional reordering, the byte order mark and interlinear annotation marks. Joiners
#: (U+200C, U+200D) and marks (U+200E, U+200F) stay allowed: Persian, Indic and emoji need them.
_TEXT_REFUSED = _BIDI_CONTROLS | {0xFEFF, 0xFFF9, 0xFFFA, 0xFFFB}
_TEXT_REFUSED_CATEGORIES = frozenset({"Cc", "Zl", "Zp", "Cs"})
#: Control characters have no Unicode name; these are the ones a file realistically holds.
_CONTROL_NAMES = {
    0x00: "NULL",
    0x09: "CHARACTER TABULATION",
    0x0A: "LINE FEED",
    0x0B: "LINE TABULATION",
    0x0C: "FORM FEED",
    0x0D: "CARRIAGE RETURN",
    0x1B: "ESCAPE",
    0x7F: "DELETE",
    0x85: "NEXT LINE",
}


def _code_point(character: str) -> str:
    return f"U+{ord(character):04X}"


def _describe(character: str) -> str:
    """``U+200B (ZERO WIDTH SPACE)``."""
    name = unicodedata.name(character, "") or _CONTROL_NAMES.get(ord(character), "")
    if not name:
        name = "control character" if unicodedata.category(character) == "Cc" else "unnamed"
    return f"{_code_point(character)} ({name})"


def _is_invisible(character: str) -> bool:
    if character == " ":
        return False
    code = ord(character)
    if code < 0x7F:
        return code < 0x20
    category = unicodedata.category(character)
    return category in _INVISIBLE_CATEGORIES or category == "Zs" or code in _OTHER_INVISIBLE


def find_invisible(value: str) -> Problem | None:
    """The first invisible, formatting, control, bidirectional or non-ASCII space character of
    an identifier, as a :class:`Problem` naming its code point and position; ``None`` if
    there is none. Plain spaces are left to the caller's syntax rules."""
    if value.isascii() and value.isprintable():
        return None
    for index, character in enumerate(value):
        if _is_invisible(character):
            return Problem(
                ProblemCode.INVISIBLE,
                f"holds the invisible or formatting character {_describe(character)} at "
                f"position {index + 1}: delete it (such characters come in with text copied "
                "from web pages, chats or spreadsheets, and make a look-alike of another value)",
                character,
                index + 1,
            )
    return None


def find_control(value: str) -> Problem | None:
    """The first character refused in a name or title: a control character (tab, line break,
    ...), a line or paragraph separator, a bidirectional embedding/override/isolate, a byte
    order mark; ``None`` if there is none."""
    if value.isascii() and value.isprintable():
        return None
    for index, character in enumerate(value):
        code = ord(character)
        if code in _TEXT_REFUSED or unicodedata.category(character) in _TEXT_REFUSED_CATEGORIES:
            return Problem(
                ProblemCode.CONTROL,
                f"holds the control character {_describe(character)} at position "
                f"{index + 1}: delete it",
                character,
                index + 1,
            )
    return None


def _find_compatibility(value: str) -> Problem | None:
    """The first character that Unicode compatibility normalisation (NFKC) changes: full-width
    letters, ligatures, mathematical alphabets, superscripts. In an identifier they make a
    look-alike of the plain spelling, so they are refused with the plain form suggested."""
    if value.isascii():
        return None
    for index, character in enumerate(value):
        plain = unicodedata.normalize("NFKC", character)
        if plain != unicodedata.normalize("NFC", character):
            return Problem(
                ProblemCode.COMPATIBILITY,
                f"holds the character {_describe(character)} at position {index + 1}, a "
                f"variant of {plain!r}: write {plain!r} instead",
                character,
                index + 1,
            )
    return None


# -- lengths ------------------------------------------------------------------------------


def check_length(value: str, limit: int | None) -> Problem | None:
    """A :class:`Problem` when ``value`` has more than ``limit`` characters (``None``: no
    limit)."""
    if limit is None or len(value) <= limit:
        return None
    return Problem(
        ProblemCode.TOO_LONG,
        f"is {len(value)} characters long; at most {limit} are allowed",
    )


# -- scripts and look-alikes --------------------------------------------------------------

#: Scripts that mix in one word by nature (Unicode TR39's "highly restrictive" level): Latin
#: with Han and Japanese kana, with Han and Bopomofo, or with Han and Hangul.
_SCRIPT_FAMILIES = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)
_NEUTRAL_SCRIPTS = frozenset({"COMMON", "INHERITED"})


def _scripts_of(value: str) -> set[str]:
    return {
        script
        for script in _scripts.unique_aliases(value)
        if script not in _NEUTRAL_SCRIPTS and script
    }


def find_mixed_script(value: str, *, separators: str = "") -> Problem | None:
    """A :class:`Problem` when one part of ``value`` mixes writing systems (Latin with Cyrillic
    or Greek, say): the hallmark of a look-alike. Digits and punctuation belong to every script.

    ``separators`` splits ``value`` into parts checked on their own (``"@."`` for an email, so
    a Cyrillic mailbox at a Latin domain is fine). The usual mixes of Han with kana, Bopomofo
    or Hangul are allowed, as Unicode TR39 allows them.
    """
    if value.isascii():
        return None
    parts = re.split(f"[{re.escape(separators)}]", value) if separators else [value]
    for part in parts:
        if part.isascii():
            continue
        scripts = _scripts_of(part)
        if len(scripts) <= 1 or any(scripts <= family for family in _SCRIPT_FAMILIES):
            continue
        position, character = _first_minority_character(part, scripts)
        offset = value.find(part) + position
        names = " and ".join(sorted(script.title() for script in scripts))
        return Problem(
            ProblemCode.MIXED_SCRIPT,
            f"mixes writing systems ({names}) in {part!r}: the character "
            f"{_describe(character)} at position {offset + 1} looks like a letter of another "
            "alphabet; retype it in one alphabet",
            character,
            offset + 1,
        )
    return None


def _first_minority_character(part: str, scripts: set[str]) -> tuple[int, str]:
    """The first character of ``part`` whose script is not the part's most common one."""
    tally: dict[str, int] = {}
    per_character = [(_scripts.alias(character), character) for character in part]
    for script, _ in per_character:
        if script in scripts:
            tally[script] = tally.get(script, 0) + 1
    main = max(sorted(tally), key=lambda script: tally[script])
    for index, (script, character) in enumerate(per_character):
        if script in scripts and script != main:
            return index, character
    return 0, part[0]  # pragma: no cover - a mixed part has a minority character


@functools.lru_cache(maxsize=65536)
def _skeleton_of(character: str) -> str:
    if character.isascii():
        return character
    plain = unicodedata.normalize("NFKC", character)
    if plain.isascii():
        return plain
    glyphs: list[str] = [
        str(glyph["c"])
        for glyph in _confusables.confusables_data.get(character, ())
        if glyph["c"].isascii() and glyph["c"].isprintable()
    ]
    if not glyphs:
        return character
    return min(glyphs, key=lambda glyph: (len(glyph), not glyph.isalnum(), glyph))


def skeleton(value: str) -> str:
    """``value`` with each character replaced by the ASCII character it looks like (Unicode's
    confusables data), lower-cased: two identifiers with the same skeleton look alike.

    An ASCII value is its own skeleton (lower-cased), so two different plain ASCII identifiers
    never count as look-alikes of each other.
    """
    if value.isascii():
        return value.lower()
    return "".join(map(_skeleton_of, value)).lower()


class LookalikeIndex:
    """Finds the known identifier a new one imitates with look-alike characters.

    ``known`` holds the identifiers already in use, in the form they are compared in (emails
    lower-cased); it is used as given for exact look-ups (pass a dict's keys or a set: it is
    not copied), and only its non-ASCII members are indexed by :func:`skeleton`.
    """

    def __init__(self, known: Collection[str]) -> None:
        self._known = known
        self._added: set[str] = set()
        self._by_skeleton: dict[str, str] = {}
        for identifier in known:
            if not identifier.isascii():
                self._by_skeleton.setdefault(skeleton(identifier), identifier)

    def add(self, identifier: str) -> None:
        """Count ``identifier`` as known from now on (a row already accepted, say)."""
        self._added.add(identifier)
        if not identifier.isascii():  # an ASCII identifier is its own skeleton: found as known
            self._by_skeleton.setdefault(skeleton(identifier), identifier)

    def add_all(self, identifiers: Iterable[str]) -> None:
        """:meth:`add` each of ``identifiers``."""
        for identifier in identifiers:
            self.add(identifier)

    def has_skeletons(self) -> bool:
        """Whether a non-ASCII identifier is known: without one, two ASCII identifiers never
        look alike, so only a non-ASCII newcomer can be a look-alike."""
        return bool(self._by_skeleton)

    def _is_known(self, identifier: str) -> bool:
        return identifier in self._known or identifier in self._added

    def find(self, identifier: str) -> str | None:
        """The known identifier that ``identifier`` differs from only by look-alike characters,
        or ``None`` (also when ``identifier`` itself is known: that is the same one)."""
        if self._is_known(identifier):
            return None
        shape = skeleton(identifier)
        if shape != identifier and self._is_known(shape):
            return shape
        other = self._by_skeleton.get(shape)
        return other if other is not None and other != identifier else None

    def check(self, identifier: str) -> Problem | None:
        """:meth:`find` as a :class:`Problem` naming both identifiers."""
        other = self.find(identifier)
        if other is None:
            return None
        return Problem(
            ProblemCode.LOOKALIKE,
            f"looks like {other!r} but differs from it by look-alike characters: use "
            f"{other!r} if it is the same person, or a clearly different identifier",
            other=other,
        )


# -- whole values -------------------------------------------------------------------------


def normalize_text(value: str, *, max_length: int | None = None) -> Checked:
    """A name or title: NFC-normalised; refused when it holds a control character
    (:func:`find_control`) or is longer than ``max_length``."""
    problem = find_control(value)
    if problem is not None:
        return Checked(value, problem)
    if not value.isascii():
        value = unicodedata.normalize("NFC", value)
    return Checked(value, check_length(value, max_length))


def check_identifier(value: str, *, max_length: int | None = None) -> Checked:
    """An identifier other than an email (an employee ID, an external id): no invisible or
    compatibility characters, one writing system, at most ``max_length`` characters.
    The value comes back NFC-normalised, case kept."""
    if value.isascii() and value.isprintable():
        return Checked(value, check_length(value, max_length))
    problem = find_invisible(value) or _find_compatibility(value)
    if problem is not None:
        return Checked(value, problem)
    value = unicodedata.normalize("NFC", value)
    problem = find_mixed_script(value) or check_length(value, max_length)
    return Checked(value, problem)


#: An ASCII dot-atom local part: what email-validator accepts without asking (the domain is
#: still checked by email-validator, once per distinct domain).
_ASCII_LOCAL_PART = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
)


def check_email(value: str, *, max_length: int | None = None) -> Checked:
    """An email address, for matching and storing: returned NFC-normalised and lower-cased.

    Refused (with a :class:`Problem`) when it holds an invisible or formatting character
    (naming the code point), a compatibility variant (full-width letters, ...), fails
    ``email-validator``'s syntax check (no DNS lookup), mixes writing systems within its mailbox
    or a domain label, or is longer than ``max_length`` characters.
    """
    if value.isascii() and value.isprintable():
        at = value.rfind("@")
        if (
            0 < at <= 64
            and len(value) <= EMAIL_MAX_LENGTH
            and _ASCII_LOCAL_PART.fullmatch(value, 0, at)
        ):
            problem = _ascii_domain_problem(value[at + 1 :].lower())
            if problem is not None:
                return Checked(value, problem)
            return Checked(value.lower(), check_length(value, max_length))
    problem = find_invisible(value) or _find_compatibility(value)
    if problem is not None:
        return Checked(value, problem)
    value = unicodedata.normalize("NFC", value)
    try:
        result = email_validator.validate_email(value, check_deliverability=False, strict=True)
    except email_validator.EmailNotValidError as exc:
        return Checked(value, _email_problem(str(exc)))
    normalized = result.normalized.lower()
    problem = find_mixed_script(f"{result.local_part}@{result.domain}", separators="@.")
    if problem is None:
        problem = check_length(normalized, max_length)
    return Checked(normalized, problem)


@functools.lru_cache(maxsize=4096)
def _ascii_domain_problem(domain: str) -> Problem | None:
    """email-validator's verdict on a plain address at ``domain`` (remembered per domain)."""
    try:
        email_validator.validate_email(f"a@{domain}", check_deliverability=False, strict=True)
    except email_validator.EmailNotValidError as exc:
        return _email_problem(str(exc))
    return None


#: :func:`check_email`'s verdict on a plain ASCII mailbox at a lower-cased domain (``None``:
#: accepted), remembered per domain: the columnar reader clears plain addresses with it.
ascii_domain_problem = _ascii_domain_problem


def _email_problem(reason: str) -> Problem:
    return Problem(
        ProblemCode.INVALID_EMAIL,
        f"is not a valid email address: {reason.rstrip('.')} (expected something like "
        "name@example.com)",
    )
