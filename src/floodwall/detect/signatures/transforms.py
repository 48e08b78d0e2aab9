"""ModSecurity's transformation functions (`t:...`), the ones CRS 3.3's request rules use.

Values are Python strings whose undecodable bytes are kept as surrogates (`errors="surrogateescape"`), so a value
turns back into the exact bytes ModSecurity would have scanned. Semantics follow ModSecurity v2's `msre_fn_*`
functions (apache2/re_tfns.c); https://github.com/SpiderLabs/ModSecurity/wiki/Reference-Manual-(v2.x)#transformation-functions
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable, Sequence
from typing import Final

import polars as pl

__all__ = [
    "LOWERING",
    "PLAIN_TRIGGERS",
    "TRANSFORMS",
    "apply_chain",
    "base64_decode_bulk",
    "chain_trigger",
    "is_supported",
    "to_bytes",
]

_HEX = "0123456789abcdefABCDEF"
_WHITESPACE = " \t\n\r\f\v\xa0"


def to_bytes(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


def _from_bytes(data: bytes | bytearray) -> str:
    return bytes(data).decode("utf-8", "surrogateescape")


def _unicode_low_byte(code: int) -> int:
    """%uHHHH and \\uHHHH without a unicode map: the low byte, full-width ASCII (U+FF01..U+FF5E) folded back."""
    low = code & 0xFF
    if code >> 8 == 0xFF and 0 < low < 0x5F:
        return low + 0x20
    return low


def _url_decode(value: str, unicode: bool) -> str:
    if "%" not in value and "+" not in value:
        return value
    data = to_bytes(value)
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        c = data[i]
        if c == 0x25:  # '%'
            if unicode and i + 5 < n and data[i + 1] in b"uU" and all(chr(b) in _HEX for b in data[i + 2 : i + 6]):
                out.append(_unicode_low_byte(int(data[i + 2 : i + 6], 16)))
                i += 6
                continue
            if i + 2 < n and all(chr(b) in _HEX for b in data[i + 1 : i + 3]):
                out.append(int(data[i + 1 : i + 3], 16))
                i += 3
                continue
            out.append(c)
        elif c == 0x2B:  # '+'
            out.append(0x20)
        else:
            out.append(c)
        i += 1
    return _from_bytes(out)


def url_decode_uni(value: str) -> str:
    return _url_decode(value, unicode=True)


def url_decode(value: str) -> str:
    return _url_decode(value, unicode=False)


_ENTITY = re.compile(r"&(?:#[xX]([0-9a-fA-F]+)|#([0-9]+)|(quot|amp|lt|gt|nbsp));?", re.IGNORECASE)
_NAMED = {"quot": '"', "amp": "&", "lt": "<", "gt": ">", "nbsp": "\xa0"}


def _entity(match: re.Match[str]) -> str:
    hexa, dec, name = match.groups()
    if name:
        return _NAMED[name.lower()]
    code = int(hexa, 16) if hexa else int(dec)
    return chr(code & 0xFF)  # ModSecurity v2 keeps one byte


def html_entity_decode(value: str) -> str:
    return _ENTITY.sub(_entity, value) if "&" in value else value


_JS_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|x([0-9a-fA-F]{2})|([0-7]{1,3})|(.))", re.DOTALL)
_JS_SIMPLE = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def _js(match: re.Match[str]) -> str:
    uni, hexa, octal, other = match.groups()
    if uni:
        return chr(_unicode_low_byte(int(uni, 16)))
    if hexa:
        return chr(int(hexa, 16))
    if octal:
        return chr(int(octal, 8) & 0xFF)
    return _JS_SIMPLE.get(other, other)


def js_decode(value: str) -> str:
    return _JS_ESCAPE.sub(_js, value) if "\\" in value else value


_CSS_ESCAPE = re.compile(r"\\(?:([0-9a-fA-F]{1,6})[ \t\n\r\f]?|(\n)|(.))", re.DOTALL)


def _css(match: re.Match[str]) -> str:
    hexa, newline, other = match.groups()
    if hexa:
        code = int(hexa, 16)
        return chr(_unicode_low_byte(code) if code > 0xFF else code)
    if newline:
        return ""
    return other


def css_decode(value: str) -> str:
    return _CSS_ESCAPE.sub(_css, value) if "\\" in value else value


def remove_nulls(value: str) -> str:
    return value.replace("\x00", "")


_WS_RUN = re.compile(r"[ \t\n\r\f\v\xa0]+")


def compress_whitespace(value: str) -> str:
    return _WS_RUN.sub(" ", value)


def remove_whitespace(value: str) -> str:
    return _WS_RUN.sub("", value)


_CMD_DELETE = str.maketrans({"\\": None, '"': None, "'": None, "^": None, ",": " ", ";": " "})
_SPACE_BEFORE = re.compile(r"[ \t\n\r\f\v]+(?=[/(])")


def cmd_line(value: str) -> str:
    """Windows and Unix command-line evasions: quotes and carets dropped, separators made spaces, lower case."""
    value = value.translate(_CMD_DELETE)
    value = _SPACE_BEFORE.sub("", value)
    return re.sub(r"[ \t\n\r\f\v]+", " ", value).lower()


def normalize_path(value: str) -> str:
    """Collapse `//`, `/./` and `dir/../` like ModSecurity's normalisePath (leading `../` stay)."""
    if "/" not in value and value not in (".", ".."):
        return value
    absolute = value.startswith("/")
    trailing = value.endswith(("/", "/.", "/..")) and len(value) > 1
    parts: list[str] = []
    for part in value.split("/"):
        if part in ("", "."):
            continue
        if part == ".." and parts and parts[-1] != "..":
            parts.pop()
        elif part == ".." and absolute:
            continue
        else:
            parts.append(part)
    result = ("/" if absolute else "") + "/".join(parts)
    if trailing and parts:
        result += "/"
    return result


def normalize_path_win(value: str) -> str:
    return normalize_path(value.replace("\\", "/"))


_COMMENT = re.compile(r"/\*.*?(?:\*/|$)", re.DOTALL)


def replace_comments(value: str) -> str:
    return _COMMENT.sub(" ", value) if "/*" in value else value


def utf8_to_unicode(value: str) -> str:
    """Non-ASCII characters become `%uHHHH`, as ModSecurity's utf8toUnicode writes them."""
    if value.isascii():
        return value
    out: list[str] = []
    for char in value:
        code = ord(char)
        if code < 0x80 or 0xDC80 <= code <= 0xDCFF:  # ASCII, or an undecodable byte kept as it was
            out.append(char)
        else:
            out.append(f"%u{code & 0xFFFF:04x}")
    return "".join(out)


_BASE64_PREFIX = re.compile(r"[A-Za-z0-9+/]*")


def base64_decode(value: str) -> str:
    """Decode the leading run of base64 characters; ModSecurity stops at the first character outside the alphabet."""
    prefix = _BASE64_PREFIX.match(value)
    text = prefix.group(0) if prefix else ""
    text = text[: len(text) - len(text) % 4] if len(text) % 4 == 1 else text + "=" * (-len(text) % 4)
    try:
        return _from_bytes(binascii.a2b_base64(text))
    except binascii.Error:
        return ""


#: base64 alphabet index -> the same character with the bits a short final quantum does not use cleared.
_B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_CLEAR_4 = {c: _B64_ALPHABET[i & 0x30] for i, c in enumerate(_B64_ALPHABET)}  # before "=="
_B64_CLEAR_2 = {c: _B64_ALPHABET[i & 0x3C] for i, c in enumerate(_B64_ALPHABET)}  # before "="


def base64_decode_bulk(values: pl.Series) -> pl.Series:
    """`base64_decode` over a Series, as bytes (Binary); null where Polars' strict decoder disagrees (Python's then).

    Same steps: the leading base64 run, a lone last character dropped, padding added; the bits Python's lenient
    decoder ignores in a short final quantum are cleared so that Polars' decoder accepts it.
    """
    run = values.str.extract(r"^([A-Za-z0-9+/]*)", 1).fill_null("")
    frame = pl.DataFrame({"run": run}).with_columns(pl.col("run").str.len_bytes().alias("n"))
    n = pl.col("n")
    head = pl.col("run").str.slice(0, n - 1)
    last = pl.col("run").str.slice(n - 1, 1)
    fixed = (
        pl.when(n % 4 == 0)
        .then(pl.col("run"))
        .when(n % 4 == 1)
        .then(head)
        .when(n % 4 == 2)
        .then(pl.concat_str(head, last.replace_strict(_B64_CLEAR_4, default=last), pl.lit("==")))
        .otherwise(pl.concat_str(head, last.replace_strict(_B64_CLEAR_2, default=last), pl.lit("=")))
    )
    return frame.select(fixed.str.decode("base64", strict=False)).to_series().alias(values.name)


TRANSFORMS: dict[str, Callable[[str], str]] = {
    "lowercase": str.lower,
    "urldecodeuni": url_decode_uni,
    "urldecode": url_decode,
    "htmlentitydecode": html_entity_decode,
    "jsdecode": js_decode,
    "cssdecode": css_decode,
    "removenulls": remove_nulls,
    "compresswhitespace": compress_whitespace,
    "removewhitespace": remove_whitespace,
    "cmdline": cmd_line,
    "normalizepath": normalize_path,
    "normalisepath": normalize_path,
    "normalizepathwin": normalize_path_win,
    "normalisepathwin": normalize_path_win,
    "replacecomments": replace_comments,
    "utf8tounicode": utf8_to_unicode,
    "base64decode": base64_decode,
}

#: Transformations that turn an ASCII value their trigger (below) does not match into its lower case.
LOWERING: Final = frozenset({"lowercase", "cmdline"})

#: Per transformation, a regex (Rust `regex` syntax, for Polars) that every ASCII value it would change matches; an
#: ASCII value it does not match comes out unchanged (or lowered, for `LOWERING`). Read off the functions above:
#: each one returns its input when no `%`/`+`, entity, backslash, NUL, whitespace run, comment or path step is there.
#: Since no step turns a value without triggers into one with triggers (lowering only changes A-Z), an ASCII value
#: matching none of a chain's triggers goes through the whole chain as itself or its lower case; the engine does
#: those in bulk. tests/detect/test_signatures_rules.py checks the claim on generated values.
PLAIN_TRIGGERS: Final[dict[str, str]] = {
    "lowercase": "",
    "urldecodeuni": r"[%+]",
    "urldecode": r"[%+]",
    "htmlentitydecode": r"(?i:&(?:#|quot|amp|lt|gt|nbsp))",
    "jsdecode": r"\\",
    "cssdecode": r"\\",
    "removenulls": r"\x00",
    "compresswhitespace": r"[\t\n\r\f\v]|  ",
    "removewhitespace": r"[ \t\n\r\f\v]",
    "cmdline": r"[\\\"'^,;\t\n\r\f\v]|  | [/(]",
    "normalizepath": r"//|(?:^|/)\.\.?(?:/|$)",
    "normalisepath": r"//|(?:^|/)\.\.?(?:/|$)",
    "normalizepathwin": r"\\|//|(?:^|/)\.\.?(?:/|$)",
    "normalisepathwin": r"\\|//|(?:^|/)\.\.?(?:/|$)",
    "replacecomments": r"/\*",
    "utf8tounicode": "",  # changes non-ASCII only
    "base64decode": "^",  # changes nearly everything
}


def chain_trigger(chain: Sequence[str]) -> str | None:
    """A regex every value the chain may change other than by lowering ASCII matches; None when nothing can change."""
    if not chain:
        return None
    parts = [r"[^\x00-\x7F]"] + [PLAIN_TRIGGERS.get(name.lower(), "^") for name in chain]
    return "|".join(sorted({part for part in parts if part}))


def is_supported(name: str) -> bool:
    return name.lower() in TRANSFORMS


def apply_chain(value: str, chain: Sequence[str]) -> str:
    for name in chain:
        value = TRANSFORMS[name.lower()](value)
    return value
