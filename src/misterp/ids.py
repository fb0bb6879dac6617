"""Ids that become file and folder names: waves, markets, question ids and options.

A model's draws are published at ``OUTPUT/WAVE/draws/MARKET/QUESTION/OPTION.parquet`` and its
fit record at ``OUTPUT/WAVE/fits/MARKET/QUESTION/OPTION.json``, so every id is a path segment.
An id with ``/`` moves a file into another folder (``x/y`` + ``z`` and ``x`` + ``y/z`` are one
path), ``..`` climbs out of the wave (a question ``../../../w0`` with options ``manifest`` and
``estimates`` overwrote another wave's manifest), and an overlong id fails only after every fit,
when the file system refuses the name. So ids are checked where they enter: the input files
(:mod:`misterp.mrp.schemas`) and the config's ``wave`` (:mod:`misterp.config`).

The rule is narrow on purpose: ASCII letters, digits, ``_``, ``-`` and ``.``, not starting with
``.`` (hidden files, ``..``), at most ``MAX_ID_LENGTH`` characters. Non-ASCII letters are left out
because one accented letter has two Unicode spellings (NFC, NFD) that are two files on Linux and
S3 but one on macOS; spaces and control characters because they break shells, URLs and S3
consoles. 64 characters keep the longest published path (wave, market, question, option and a
suffix) far below the 255-byte limit on one name and the 1,024-byte limit on an S3 key. Case is
kept, but ids that share a folder may not differ only in case (``misterp.inputs.case_clashes``):
``q_c`` and ``Q_C`` are one file on macOS, Windows and some S3 gateways.
"""

from __future__ import annotations

import re

__all__ = ["ID_RULE", "MAX_ID_LENGTH", "id_problem", "is_safe_id", "shown"]

#: Longest id accepted, in characters.
MAX_ID_LENGTH = 64
#: The rule, as error messages state it.
ID_RULE = f"1 to {MAX_ID_LENGTH} ASCII letters, digits, '_', '-' or '.', not starting with '.'"

_SAFE_ID = re.compile(rf"[A-Za-z0-9_-][A-Za-z0-9_.-]{{0,{MAX_ID_LENGTH - 1}}}")
_ALLOWED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.")
#: Longest id shown whole in a message; longer ones are cut (a 300-character id is noise).
_SHOWN = 40


def is_safe_id(value: object) -> bool:
    """True when ``value`` can be used as a file or folder name of the results.

    >>> [is_safe_id(v) for v in ("aware_brand01", "2026-10", "18-24", "v1.2")]
    [True, True, True, True]
    >>> [is_safe_id(v) for v in ("x/y", "..", ".hidden", "a b", "", None, "a" * 65)]
    [False, False, False, False, False, False, False]
    """
    return isinstance(value, str) and bool(_SAFE_ID.fullmatch(value)) and ".." not in value


def id_problem(value: object) -> str | None:
    """Why ``value`` cannot be an id, said as a person would say it; None when it can.

    >>> id_problem("aware_brand01") is None
    True
    >>> id_problem("../../../w0")
    "contains '/'"
    >>> id_problem("a" * 300)
    'has 300 characters, more than 64'
    """
    if not isinstance(value, str):
        return f"is not text ({type(value).__name__})"
    if not value:
        return "is empty"
    if len(value) > MAX_ID_LENGTH:
        return f"has {len(value)} characters, more than {MAX_ID_LENGTH}"
    for separator in ("/", "\\"):
        if separator in value:
            return f"contains {separator!r}"
    if ".." in value:
        return "contains '..'"
    if value.startswith("."):
        return "starts with '.'"
    if any(character.isspace() for character in value):
        return "contains whitespace"
    if any(not character.isprintable() for character in value):
        return "contains a control character"
    others = sorted({character for character in value if character not in _ALLOWED})
    if others:
        return "contains " + ", ".join(repr(character) for character in others)
    return None


def shown(value: object) -> str:
    """An id quoted for a message, cut when it is long.

    >>> shown("aware_brand01")
    "'aware_brand01'"
    >>> shown("q" * 300)
    "'qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq...' (300 characters)"
    """
    text = str(value)
    if len(text) <= _SHOWN:
        return f"'{text}'"
    return f"'{text[:_SHOWN]}...' ({len(text)} characters)"
