r"""The `pattern` keyword: Python `re` semantics, matched in linear time.

The reference validator (jsonschema) evaluates `pattern` with `re.search` on Python's
backtracking engine. Running that engine on a model's answer is a ReDoS hazard (for
example `(a+)+$`), so the compiler accepts a well-defined subset of Python's pattern
syntax, parses it itself, and translates it into an *equivalent* expression for Rust's
`regex` crate (the engine pydantic-core embeds; it runs in linear time and never
backtracks). Equivalent means: for every string without unpaired surrogates,
`re.search(source, s)` finds a match exactly when the translated expression does.

How the translation stays exact where the two engines differ:

* `\d`, `\w`, `\s` (and their negations) mean different character sets in the two
  engines (Rust follows UTS #18: `\w` includes combining marks, `\s` excludes
  U+001C..U+001F; their Unicode tables are also of different versions). They are
  translated into explicit ranges computed *from Python's own engine* at first use.
* `.` is translated to "anything but U+000A", which is what Python's `.` means.
* `$` in Python also matches before a final newline; it is translated to `\n?\z`, which
  is only equivalent when nothing follows the `$`, so `$` is only accepted at the end of
  the pattern (or of a top-level alternative). `\Z` is Python's "end of string".
* Every literal is emitted as `\x{...}`, so no character is ever a metacharacter in the
  other dialect, and capture groups become non-capturing groups (only "is there a
  match?" is asked).

Rejected, with a message naming the feature: lookahead/lookbehind, backreferences
(`\1`, `\k<name>`, `(?P=name)`), named groups, inline flags such as `(?i)`, atomic
groups and possessive quantifiers, conditionals, comments, `\b`/`\B`, octal and
`\N{...}` escapes, `{,n}`, unescaped `{`/`}`/`]` outside their syntax, nested-set and
set-operation syntax inside classes (`[[`, `&&`, `--`, `~~`, `||`), repetition counts
above 1000, and anything Python's `re` itself refuses.
"""

from __future__ import annotations

import array
import functools
import re
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from pydantic_core import SchemaError as CoreSchemaError
from pydantic_core import SchemaValidator, core_schema

__all__ = ["CompiledPattern", "PatternRejected", "compile_pattern"]

_MAX_GROUP_NESTING: Final = 16
_MAX_REPEAT: Final = 1_000
_SURROGATES: Final = (0xD800, 0xDFFF)
_MAX_CODE_POINT: Final = 0x10FFFF

CategoryName: TypeAlias = Literal["d", "w", "s"]


class PatternRejected(Exception):
    """A pattern outside the supported subset; the message names the feature."""


# --- AST ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Lit:
    cp: int


@dataclass(frozen=True, slots=True)
class _Set:
    negated: bool
    ranges: tuple[tuple[int, int], ...]
    cats: tuple[tuple[CategoryName, bool], ...]
    """Python categories in the set, each with whether it is negated (`\\D`)."""


@dataclass(frozen=True, slots=True)
class _Seq:
    items: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Alt:
    branches: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Repeat:
    inner: _Node
    min: int
    max: int | None


@dataclass(frozen=True, slots=True)
class _Anchor:
    kind: Literal["start", "end", "end_or_newline"]


_Node: TypeAlias = _Lit | _Set | _Seq | _Alt | _Repeat | _Anchor

_DOT: Final = _Set(negated=True, ranges=((0x0A, 0x0A),), cats=())
_SIMPLE_ESCAPES: Final[dict[str, int]] = {"n": 0x0A, "t": 0x09, "r": 0x0D, "f": 0x0C, "v": 0x0B, "a": 0x07}
_CATEGORY_ESCAPES: Final[dict[str, tuple[CategoryName, bool]]] = {
    "d": ("d", False),
    "D": ("d", True),
    "w": ("w", False),
    "W": ("w", True),
    "s": ("s", False),
    "S": ("s", True),
}
_HEX: Final = frozenset("0123456789abcdefABCDEF")
_ASCII_ALNUM: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_QUANTIFIER: Final = re.compile(r"\{([0-9]+)(?:(,)([0-9]*))?\}")


# --- parser ---------------------------------------------------------------------------


class _Parser:
    """Recursive descent over the supported subset; nesting is bounded by `_MAX_GROUP_NESTING`."""

    def __init__(self, source: str) -> None:
        self.src = source
        self.i = 0
        self.nesting = 0

    def fail(self, message: str) -> PatternRejected:
        return PatternRejected(f"{message} (at position {self.i})")

    def parse(self) -> _Node:
        node = self.alternation()
        if self.i < len(self.src):
            raise self.fail("unbalanced ')'")
        return node

    def alternation(self) -> _Node:
        branches = [self.sequence()]
        while self.i < len(self.src) and self.src[self.i] == "|":
            self.i += 1
            branches.append(self.sequence())
        return branches[0] if len(branches) == 1 else _Alt(tuple(branches))

    def sequence(self) -> _Node:
        items: list[_Node] = []
        while self.i < len(self.src) and self.src[self.i] not in "|)":
            atom = self.atom()
            bounds = self.quantifier()
            if bounds is not None:
                if isinstance(atom, _Anchor):
                    raise self.fail("an anchor cannot be repeated")
                atom = _Repeat(atom, bounds[0], bounds[1])
                if self.i < len(self.src) and (
                    self.src[self.i] in "*+?" or _QUANTIFIER.match(self.src, self.i) is not None
                ):
                    raise self.fail("multiple repeat (possessive quantifiers such as '*+' are not supported)")
            items.append(atom)
        return items[0] if len(items) == 1 else _Seq(tuple(items))

    def quantifier(self) -> tuple[int, int | None] | None:
        if self.i >= len(self.src):
            return None
        char = self.src[self.i]
        bounds: tuple[int, int | None]
        if char == "*":
            bounds, self.i = (0, None), self.i + 1
        elif char == "+":
            bounds, self.i = (1, None), self.i + 1
        elif char == "?":
            bounds, self.i = (0, 1), self.i + 1
        elif char == "{":
            match = _QUANTIFIER.match(self.src, self.i)
            if match is None:
                raise self.fail("'{' must be escaped unless it starts a quantifier {n}, {n,} or {n,m}")
            low = int(match.group(1))
            high: int | None = low
            if match.group(2):
                high = int(match.group(3)) if match.group(3) else None
            if low > _MAX_REPEAT or (high is not None and high > _MAX_REPEAT):
                raise self.fail(f"repetition counts above {_MAX_REPEAT} are not supported")
            if high is not None and high < low:
                raise self.fail("min repeat greater than max repeat")
            bounds, self.i = (low, high), match.end()
        else:
            return None
        # A trailing '?' makes the quantifier lazy, which cannot change whether a match exists.
        if self.i < len(self.src) and self.src[self.i] == "?":
            self.i += 1
        return bounds

    def atom(self) -> _Node:
        char = self.src[self.i]
        if char == "(":
            return self.group()
        if char == "[":
            return self.char_class()
        if char == "\\":
            return self.escape()
        self.i += 1
        if char == ".":
            return _DOT
        if char == "^":
            return _Anchor("start")
        if char == "$":
            return _Anchor("end_or_newline")
        if char in "*+?":
            self.i -= 1
            raise self.fail("nothing to repeat")
        if char in "{}]":
            self.i -= 1
            raise self.fail(f"'{char}' must be escaped")
        return _Lit(_checked_code_point(ord(char), self))

    def group(self) -> _Node:
        src, start = self.src, self.i
        if src.startswith("(?:", start):
            self.i += 3
        elif src.startswith("(?", start):
            raise self.fail(_describe_group_extension(src[start : start + 4]))
        else:
            self.i += 1
        self.nesting += 1
        if self.nesting > _MAX_GROUP_NESTING:
            raise self.fail(f"groups nested deeper than {_MAX_GROUP_NESTING}")
        inner = self.alternation()
        if self.i >= len(src) or src[self.i] != ")":
            raise self.fail("missing ')'")
        self.i += 1
        self.nesting -= 1
        return inner

    def escape(self) -> _Node:
        src = self.src
        if self.i + 1 >= len(src):
            raise self.fail("bad escape (end of pattern)")
        char = src[self.i + 1]
        if char in _CATEGORY_ESCAPES:
            self.i += 2
            return _Set(negated=False, ranges=(), cats=(_CATEGORY_ESCAPES[char],))
        if char == "A":
            self.i += 2
            return _Anchor("start")
        if char == "Z":
            self.i += 2
            return _Anchor("end")
        if char in "bB":
            raise self.fail(f"'\\{char}' (word boundary) is not supported: Python and Rust disagree on words")
        return _Lit(self.literal_escape())

    def literal_escape(self) -> int:
        """An escape that stands for one character, valid both outside and inside a class."""
        src = self.src
        char = src[self.i + 1]
        if char in _SIMPLE_ESCAPES:
            self.i += 2
            return _SIMPLE_ESCAPES[char]
        if char in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[char]
            digits = src[self.i + 2 : self.i + 2 + width]
            if len(digits) != width or not set(digits) <= _HEX:
                raise self.fail(f"'\\{char}' needs exactly {width} hex digits")
            self.i += 2 + width
            return _checked_code_point(int(digits, 16), self)
        if char.isdigit() and char in _ASCII_ALNUM:
            if char == "0":
                raise self.fail("octal escapes are not supported")
            raise self.fail(f"backreferences ('\\{char}') are not supported")
        if char == "k":
            raise self.fail("backreferences ('\\k<name>') are not supported")
        if char == "N":
            raise self.fail("'\\N{...}' escapes are not supported")
        if char in _ASCII_ALNUM:
            raise self.fail(f"bad escape '\\{char}'")
        # Python reads a backslash before any other character as that character.
        self.i += 2
        return _checked_code_point(ord(char), self)

    def char_class(self) -> _Set:
        src = self.src
        self.i += 1
        negated = self.i < len(src) and src[self.i] == "^"
        if negated:
            self.i += 1
        if self.i < len(src) and src[self.i] == "]":
            raise self.fail("']' at the start of a character class must be escaped")
        ranges: list[tuple[int, int]] = []
        cats: list[tuple[CategoryName, bool]] = []
        first = True
        while True:
            if self.i >= len(src):
                raise self.fail("unterminated character set")
            char = src[self.i]
            if char == "]":
                self.i += 1
                break
            if char == "[":
                raise self.fail("'[' inside a character class must be escaped")
            if char in "&~|-" and src.startswith(char * 2, self.i):
                raise self.fail(f"'{char * 2}' inside a character class is set-operation syntax; escape it")
            if char == "-" and not first and not src.startswith("-]", self.i):
                raise self.fail("'-' inside a character class must be first, last, or form a range")
            item = self.class_item()
            first = False
            if isinstance(item, tuple):
                cats.append(item)
                if src.startswith("-", self.i) and not src.startswith("-]", self.i):
                    raise self.fail("bad character range")
                continue
            low = item
            if src.startswith("-", self.i) and not src.startswith("-]", self.i) and self.i + 1 < len(src):
                self.i += 1
                high = self.class_item()
                if isinstance(high, tuple):
                    raise self.fail("bad character range")
                if high < low:
                    raise self.fail("bad character range (end before start)")
                ranges.append((low, high))
            else:
                ranges.append((low, low))
        return _Set(negated=negated, ranges=tuple(ranges), cats=tuple(cats))

    def class_item(self) -> int | tuple[CategoryName, bool]:
        src = self.src
        char = src[self.i]
        if char != "\\":
            self.i += 1
            return _checked_code_point(ord(char), self)
        if self.i + 1 >= len(src):
            raise self.fail("bad escape (end of pattern)")
        escaped = src[self.i + 1]
        if escaped in _CATEGORY_ESCAPES:
            self.i += 2
            return _CATEGORY_ESCAPES[escaped]
        if escaped == "b":
            # Python reads [\b] as a backspace and Rust as an error: too easy to misread.
            raise self.fail("'\\b' inside a character class is not supported; use '\\x08'")
        return self.literal_escape()


def _checked_code_point(cp: int, parser: _Parser) -> int:
    if _SURROGATES[0] <= cp <= _SURROGATES[1]:
        raise parser.fail("surrogate code points are not supported")
    if cp > _MAX_CODE_POINT:
        raise parser.fail("code point out of range")
    return cp


def _describe_group_extension(head: str) -> str:
    if head.startswith(("(?=", "(?!")):
        return "lookahead ('(?=' / '(?!') is not supported: it needs a backtracking engine"
    if head.startswith(("(?<=", "(?<!")):
        return "lookbehind ('(?<=' / '(?<!') is not supported: it needs a backtracking engine"
    if head.startswith("(?P="):
        return "backreferences ('(?P=name)') are not supported"
    if head.startswith(("(?P<", "(?<")):
        return "named groups are not supported; use '(?:...)' or '(...)'"
    if head.startswith("(?>"):
        return "atomic groups ('(?>') are not supported"
    if head.startswith("(?#"):
        return "comments ('(?#') are not supported"
    if head.startswith("(?("):
        return "conditional groups ('(?(') are not supported"
    return "inline flags and other '(?' extensions are not supported"


def _check_end_anchors(node: _Node, *, tail: bool) -> None:
    """Accept `$` only where nothing can follow it (see the module docstring)."""
    if isinstance(node, _Anchor):
        if node.kind == "end_or_newline" and not tail:
            raise PatternRejected("'$' is only supported at the end of the pattern (or use '\\Z')")
    elif isinstance(node, _Seq):
        last = len(node.items) - 1
        for index, item in enumerate(node.items):
            _check_end_anchors(item, tail=tail and index == last)
    elif isinstance(node, _Alt):
        for branch in node.branches:
            _check_end_anchors(branch, tail=tail)
    elif isinstance(node, _Repeat):
        _check_end_anchors(node.inner, tail=tail and node.max == 1)


# --- Python's character categories ----------------------------------------------------


@functools.cache
def _all_scalar_values() -> str:
    """Every Unicode scalar value, in order, as one string (built via UTF-32: 4x faster)."""
    codes = array.array("I", range(_SURROGATES[0]))
    codes.extend(range(_SURROGATES[1] + 1, _MAX_CODE_POINT + 1))
    return codes.tobytes().decode("utf-32-le" if sys.byteorder == "little" else "utf-32-be")


@functools.cache
def python_category(name: CategoryName) -> tuple[tuple[int, int], ...]:
    r"""The code point ranges Python's `re` matches for `\d`, `\w` or `\s`.

    Computed by asking the engine itself, so that the translation follows the Unicode
    tables of the running interpreter (the reference validator uses the same engine).
    """
    found = re.finditer(f"\\{name}+", _all_scalar_values())
    return tuple((ord(match.group()[0]), ord(match.group()[-1])) for match in found)


_CATEGORY_RE: Final = {name: re.compile(f"\\{name}") for name in ("d", "w", "s")}


def _set_contains(node: _Set, char: str) -> bool:
    cp = ord(char)
    inside = any(low <= cp <= high for low, high in node.ranges) or any(
        (_CATEGORY_RE[name].match(char) is None) == negated for name, negated in node.cats
    )
    return inside != node.negated


# --- translation to Rust ---------------------------------------------------------------


def _rust_char(cp: int) -> str:
    return f"\\x{{{cp:X}}}"


def _rust_ranges(ranges: tuple[tuple[int, int], ...]) -> str:
    return "".join(_rust_char(lo) if lo == hi else f"{_rust_char(lo)}-{_rust_char(hi)}" for lo, hi in ranges)


def _rust_set(node: _Set) -> str:
    parts = [_rust_ranges(node.ranges)]
    for name, negated in node.cats:
        ranges = _rust_ranges(python_category(name))
        # A negated category inside a class is a nested negated class (a union in Rust).
        parts.append(f"[^{ranges}]" if negated else ranges)
    body = "".join(parts)
    if not body:
        return "[^\\x{0}-\\x{10FFFF}]" if not node.negated else "[\\x{0}-\\x{10FFFF}]"
    return f"[{'^' if node.negated else ''}{body}]"


def _to_rust(node: _Node) -> str:
    if isinstance(node, _Lit):
        return _rust_char(node.cp)
    if isinstance(node, _Set):
        return _rust_set(node)
    if isinstance(node, _Seq):
        return "".join(_to_rust(item) for item in node.items)
    if isinstance(node, _Alt):
        return "(?:" + "|".join(_to_rust(branch) for branch in node.branches) + ")"
    if isinstance(node, _Repeat):
        upper = "" if node.max is None else str(node.max)
        return f"(?:{_to_rust(node.inner)}){{{node.min},{upper}}}"
    if node.kind == "start":
        return "\\A"
    if node.kind == "end":
        return "\\z"
    return "(?:\\n?\\z)"


def _cost(node: _Node) -> int:
    """Rough size of the automaton Rust builds: ranges times repetitions."""
    if isinstance(node, _Lit | _Anchor):
        return 1
    if isinstance(node, _Set):
        return 1 + len(node.ranges) + sum(len(python_category(name)) for name, _ in node.cats)
    if isinstance(node, _Seq):
        return sum(_cost(item) for item in node.items) + 1
    if isinstance(node, _Alt):
        return sum(_cost(branch) for branch in node.branches) + 1
    copies = node.max if node.max is not None else node.min + 1
    return _cost(node.inner) * max(copies, 1) + 1


# --- example strings -------------------------------------------------------------------

_MAX_EXAMPLE_LENGTH: Final = 4_096
_PREFERRED: Final = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-.@:/"


def _pick(node: _Set, variant: int) -> str | None:
    """The `variant`-th character of a set, preferring readable ASCII."""
    seen = 0
    for char in _PREFERRED:
        if _set_contains(node, char):
            if seen == variant:
                return char
            seen += 1
    # Few sets lack every readable character; find some member deterministically.
    for cp in range(0x20, 0x3000):
        char = chr(cp)
        if not (_SURROGATES[0] <= cp <= _SURROGATES[1]) and _set_contains(node, char):
            return char
    for low, _ in node.ranges:
        if not node.negated and not (_SURROGATES[0] <= low <= _SURROGATES[1]):
            return chr(low)
    return None


def _generate(node: _Node, expand: int, variant: int) -> str | None:
    if isinstance(node, _Lit):
        return chr(node.cp)
    if isinstance(node, _Set):
        return _pick(node, variant)
    if isinstance(node, _Anchor):
        return ""
    if isinstance(node, _Seq):
        parts: list[str] = []
        for item in node.items:
            part = _generate(item, expand, variant)
            if part is None:
                return None
            parts.append(part)
        return "".join(parts)
    if isinstance(node, _Alt):
        count = len(node.branches)
        for offset in range(count):
            part = _generate(node.branches[(variant + offset) % count], expand, variant)
            if part is not None:
                return part
        return None
    times = node.min + expand if node.max is None else min(node.max, node.min + expand)
    part = _generate(node.inner, expand, variant) if times else ""
    if part is None or len(part) * times > _MAX_EXAMPLE_LENGTH:
        return None  # nested repetitions grow geometrically: give up on this expansion
    return part * times


def _anchored(node: _Node) -> tuple[bool, bool]:
    """Whether the pattern is anchored at its start and at its end (conservatively)."""
    text = _to_rust(node)
    return "\\A" in text, "\\z" in text


# --- public ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class CompiledPattern:
    """A pattern accepted by the compiler, ready to match in linear time."""

    source: str
    """The pattern as written in the schema (what the model is shown)."""
    rust: str
    """The equivalent expression for Rust's `regex` crate."""
    cost: int
    """The automaton size estimate the budget was checked against."""
    _ast: _Node
    _matcher: SchemaValidator

    def search(self, value: str) -> bool:
        """Whether `re.search(self.source, value)` would find a match."""
        return self._matcher.isinstance_python(value)

    def examples(self, min_length: int = 0) -> Iterator[str]:
        """Strings that should match, short and readable first (deterministic).

        Heuristic: callers verify every candidate (a pattern such as `a^b` yields
        strings that do not match). `min_length` adds candidates long enough for it.
        """
        start, end = _anchored(self._ast)
        seen: set[str] = set()
        for expand in (*range(12), min_length):
            for variant in range(4):
                candidate = _generate(self._ast, expand, variant)
                if candidate is None:
                    continue
                # Characters around an unanchored match keep it a match: a cheap way to
                # reach a minimum length or to make distinct strings.
                padded = [candidate]
                for pad in "abc":
                    padding = pad * max(expand + 1, min_length - len(candidate))
                    if not end:
                        padded.append(candidate + padding)
                    if not start:
                        padded.append(padding + candidate)
                for text in padded:
                    if text not in seen:
                        seen.add(text)
                        yield text


@functools.lru_cache(maxsize=1024)
def compile_pattern(source: str, max_cost: int) -> CompiledPattern:
    """Parse, check and translate a pattern; raise `PatternRejected` if unsupported.

    Cached: the same pattern appears in many schemas and across recompiles.
    """
    if any(_SURROGATES[0] <= ord(char) <= _SURROGATES[1] for char in source):
        raise PatternRejected("surrogate code points are not supported")
    parser = _Parser(source)
    ast = parser.parse()
    _check_end_anchors(ast, tail=True)
    # The reference validator hands the pattern to `re`; never accept what `re` refuses
    # or warns about (FutureWarning marks syntax whose meaning is going to change).
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            re.compile(source)
        except (re.error, FutureWarning, DeprecationWarning) as error:
            raise PatternRejected(f"is not a valid Python regular expression: {error}") from None
    cost = _cost(ast)
    if cost > max_cost:
        raise PatternRejected(f"is too complex (estimated automaton size {cost} > {max_cost})")
    rust = _to_rust(ast)
    try:
        matcher = SchemaValidator(core_schema.str_schema(pattern=rust, strict=True))
    except CoreSchemaError as error:
        reason = str(error).strip().splitlines()[-1].strip()
        raise PatternRejected(f"cannot be compiled to a linear-time automaton: {reason}") from None
    return CompiledPattern(source=source, rust=rust, cost=cost, _ast=ast, _matcher=matcher)
