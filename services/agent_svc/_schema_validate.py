"""The compiled form of a checked schema and the exact instance validator.

Every keyword is evaluated the way `jsonschema` evaluates it (the reference): the same
type rules (`true` is not an integer, `1.0` is), the same comparisons, the same float
algorithm for `multipleOf`, the same equality for `enum`/`const`/`uniqueItems` (`1` and
`1.0` are equal, `1` and `true` are not), code-point string lengths, additional
properties allowed unless `additionalProperties` says otherwise. Where the reference
has a quirk, it is mirrored and said so in a comment. The property tests in
`tests/unit/test_schema_compiler_property.py` hold the two to the same answers.

`$ref` targets are compiled once and shared (a reference is an edge, never an
expansion), and their results are memoized per (definition, value) during one
validation, so a schema such as the `$ref` bomb (each definition an `anyOf` of two
references to the previous one) validates in linear time.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Final, TypeAlias, cast
from urllib.parse import unquote

from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

from libs.common.jsonvalue import JsonObject, JsonValue
from services.agent_svc._schema_check import ANNOTATIONS, CheckedSchema, format_checker, json_domain_error
from services.agent_svc._schema_regex import CompiledPattern
from services.agent_svc._schema_types import SchemaBudget, SchemaError, join_pointer

__all__ = [
    "NO_VALUE",
    "InstanceValidator",
    "Node",
    "build_graph",
    "copy_instance",
    "json_key",
    "node_accepts",
    "split_ref",
]

Loc: TypeAlias = tuple[str | int, ...]
Key: TypeAlias = tuple[object, ...]
_Error: TypeAlias = tuple[Loc, str, str, JsonValue]
"""(location, error type, message, offending value)."""

_MAX_ERRORS: Final = 20
_MAX_HOPS: Final = 200
"""Nested evaluations before an instance is refused as too deep. Each costs two or three
Python frames; with the caller's stack this stays inside the default recursion limit
(RecursionError is still caught, as a last resort, and reported the same way)."""
_MAX_CHAIN: Final = 100
"""Longest chain of `$ref`/`anyOf`/`oneOf` edges that stays on one instance value."""
NO_VALUE: Final = object()
"""`Node.const` when the schema has no `const` (which may itself be null)."""
_NON_ANNOTATIONS_IGNORED: Final = frozenset({"$schema", "$id", "$defs", "definitions"})


@dataclass(eq=False, slots=True)
class Node:
    """One subschema, compiled."""

    pointer: str
    accept_all: bool = False
    reject_all: bool = False
    shared: bool = False
    """A `$defs` entry: reachable from several places, so its results are memoized."""
    types: tuple[str, ...] | None = None
    enum: tuple[JsonValue, ...] | None = None
    enum_keys: frozenset[Key] = frozenset()
    const: object = NO_VALUE
    const_key: Key = ()
    min_length: int | None = None
    max_length: int | None = None
    pattern: CompiledPattern | None = None
    format: str | None = None
    format_check: Callable[[str], bool] | None = None
    minimum: int | float | None = None
    maximum: int | float | None = None
    exclusive_minimum: int | float | None = None
    exclusive_maximum: int | float | None = None
    multiple_of: int | float | None = None
    properties: dict[str, Node] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    additional: Node | None = None
    items: Node | None = None
    min_items: int | None = None
    max_items: int | None = None
    unique_items: bool = False
    any_of: tuple[Node, ...] = ()
    one_of: tuple[Node, ...] = ()
    ref: Node | None = None

    @property
    def has_object_keywords(self) -> bool:
        return bool(self.properties or self.required or self.additional is not None)

    @property
    def has_array_keywords(self) -> bool:
        bounded = self.min_items is not None or self.max_items is not None
        return self.items is not None or bounded or self.unique_items

    @property
    def has_string_keywords(self) -> bool:
        return (
            self.min_length is not None
            or self.max_length is not None
            or self.pattern is not None
            or self.format is not None
        )

    @property
    def has_number_keywords(self) -> bool:
        return any(
            bound is not None
            for bound in (
                self.minimum, self.maximum, self.exclusive_minimum, self.exclusive_maximum, self.multiple_of
            )
        )  # fmt: skip

    def successors(self) -> list[Node]:
        """Nodes evaluated against the same instance value (no descent into it)."""
        edges = [*self.any_of, *self.one_of]
        if self.ref is not None:
            edges.append(self.ref)
        return edges

    def edge_pointer(self, successor: Node) -> str:
        """The pointer of the keyword that leads from this node to `successor`."""
        if successor is self.ref:
            return join_pointer(self.pointer, "$ref")
        for keyword, branches in (("anyOf", self.any_of), ("oneOf", self.one_of)):
            for index, branch in enumerate(branches):
                if branch is successor:
                    return join_pointer(self.pointer, keyword, index)
        return self.pointer


# --- JSON equality, exactly as jsonschema._utils ----------------------------------------


def json_key(value: JsonValue) -> Key:
    """A hashable key such that two values are JSON-equal exactly when their keys are.

    Equal to jsonschema's `equal`: strings only equal strings, arrays compare item by
    item, objects by key set and values, booleans only equal booleans, numbers by value
    (`1 == 1.0`), and `null` only `null`. Python's hash(1) == hash(1.0) keeps sets exact.
    """
    kind = type(value)
    if kind is bool:
        return (1, value)
    if kind is int or kind is float:
        return (2, value)
    if kind is str:
        return (3, value)
    if kind is list:
        return (4, tuple(json_key(item) for item in cast(list[JsonValue], value)))
    if kind is dict:
        items = cast(dict[str, JsonValue], value).items()
        return (5, frozenset((name, json_key(item)) for name, item in items))
    return (0,)


_TRUE: Final = object()
_FALSE: Final = object()


def _unbool(value: object) -> object:
    if value is True:
        return _TRUE
    if value is False:
        return _FALSE
    return value


def _reference_equal(one: object, two: object) -> bool:
    """jsonschema._utils.equal, for the sort path of `_unique` (which only meets lists and scalars)."""
    if one is two:
        return True
    if isinstance(one, str) or isinstance(two, str):
        return one == two
    if isinstance(one, list) and isinstance(two, list):
        return len(one) == len(two) and all(_reference_equal(a, b) for a, b in zip(one, two, strict=True))
    if isinstance(one, dict) and isinstance(two, dict):
        return len(one) == len(two) and all(k in two and _reference_equal(v, two[k]) for k, v in one.items())
    return _unbool(one) == _unbool(two)


def _unique(items: list[JsonValue]) -> bool:
    """jsonschema._utils.uniq, with the same answer on every input.

    The reference sorts when it can and compares neighbours; that path has a quirk
    (`[[1], [true], [1]]` is reported unique, because `[1]` and `[true]` sort as equal
    in Python while being different in JSON) which is mirrored here, since the rule is
    to accept exactly what the reference accepts. When sorting fails, the reference
    compares all pairs; hashing the JSON-equality key gives the same answer in O(n).
    """
    try:
        ordered = sorted(_unbool(item) for item in items)  # type: ignore[type-var]  # may raise TypeError, as in the reference
        for one, two in zip(ordered, itertools.islice(ordered, 1, None), strict=False):
            if _reference_equal(one, two):
                return False
    except (NotImplementedError, TypeError):
        seen: set[Key] = set()
        for item in items:
            key = json_key(item)
            if key in seen:
                return False
            seen.add(key)
    return True


def _is_multiple(value: int | float, divisor: int | float) -> bool:
    """The reference's `multipleOf`, float algorithm included (0.3 is no multiple of 0.1)."""
    try:
        if type(divisor) is float:
            quotient = value / divisor
            try:
                return int(quotient) == quotient
            except OverflowError:
                return (Fraction(value) / Fraction(divisor)).denominator == 1
        return not value % divisor
    except OverflowError:
        # The reference raises here (a huge integer against a float, or a float against
        # a huge integer); an answer nobody could check is not accepted.
        return False


def _type_ok(types: tuple[str, ...], value: JsonValue) -> bool:
    kind = type(value)
    if kind is bool:
        return "boolean" in types
    if kind is int:
        return "integer" in types or "number" in types
    if kind is float:
        return "number" in types or ("integer" in types and cast(float, value).is_integer())
    if kind is str:
        return "string" in types
    if kind is dict:
        return "object" in types
    if kind is list:
        return "array" in types
    return "null" in types


def _show(value: object, limit: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _or(words: tuple[str, ...]) -> str:
    return " or ".join(f"'{word}'" for word in words)


def _loc_text(loc: Loc) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc) or "(value)"


class _TooDeepError(Exception):
    pass


class _Evaluation:
    """One validation: the memo of shared-definition results lives as long as the value."""

    __slots__ = ("cap", "explaining", "memo")

    def __init__(self) -> None:
        self.memo: dict[tuple[int, int], bool] = {}
        self.cap = _MAX_ERRORS
        self.explaining = False

    def check(self, node: Node, value: JsonValue, hops: int, loc: Loc, errors: list[_Error] | None) -> bool:
        """Whether `value` is valid; with `errors`, also say why not (up to a cap)."""
        if errors is None and node.shared:
            # The key uses identities: the value lives (inside the instance) for the
            # whole evaluation, and a result depends only on (node, value).
            key = (id(node), id(value))
            known = self.memo.get(key)
            if known is None:
                known = self.memo[key] = self.evaluate(node, value, hops, loc, None)
            return known
        return self.evaluate(node, value, hops, loc, errors)

    def evaluate(
        self, node: Node, value: JsonValue, hops: int, loc: Loc, errors: list[_Error] | None
    ) -> bool:
        if hops > _MAX_HOPS:
            raise _TooDeepError
        if node.accept_all:
            return True
        if errors is not None and len(errors) >= self.cap:
            return False  # already invalid; stop spending time on more reasons
        if node.reject_all:
            if errors is None:
                return False
            errors.append((loc, "false_schema", "No value is allowed here", value))
            return False
        ok = True
        kind = type(value)
        if node.types is not None and not _type_ok(node.types, value):
            if errors is None:
                return False
            errors.append((loc, "type", f"Input should be of type {_or(node.types)}", value))
            ok = False
        if node.enum is not None and json_key(value) not in node.enum_keys:
            if errors is None:
                return False
            shown = ", ".join(_show(option, 40) for option in node.enum[:10])
            more = ", ..." if len(node.enum) > 10 else ""
            errors.append((loc, "enum", f"Input should be one of: {shown}{more}", value))
            ok = False
        if node.const is not NO_VALUE and json_key(value) != node.const_key:
            if errors is None:
                return False
            errors.append((loc, "const", f"Input should be {_show(node.const)}", value))
            ok = False
        if kind is str:
            ok = self.string(node, cast(str, value), loc, errors) and ok
        elif kind is int or kind is float:
            ok = self.number(node, cast(int | float, value), loc, errors) and ok
        elif kind is dict:
            ok = self.object(node, cast(JsonObject, value), hops, loc, errors) and ok
        elif kind is list:
            ok = self.array(node, cast(list[JsonValue], value), hops, loc, errors) and ok
        if node.ref is not None and not self.check(node.ref, value, hops + 1, loc, errors):
            if errors is None:
                return False
            ok = False
        if node.any_of and not any(self.check(branch, value, hops + 1, loc, None) for branch in node.any_of):
            if errors is None:
                return False
            detail = self.branch_detail(node.any_of, value, hops, loc)
            errors.append((loc, "anyOf", f"Input should match at least one 'anyOf' schema{detail}", value))
            ok = False
        if node.one_of:
            matched = [
                index
                for index, branch in enumerate(node.one_of)
                if self.check(branch, value, hops + 1, loc, None)
            ]
            if len(matched) != 1:
                if errors is None:
                    return False
                if matched:
                    indexes = ", ".join(map(str, matched))
                    message = f"Input should match exactly one 'oneOf' schema, but matches {indexes}"
                else:
                    detail = self.branch_detail(node.one_of, value, hops, loc)
                    message = f"Input should match exactly one 'oneOf' schema, but matches none{detail}"
                errors.append((loc, "oneOf", message, value))
                ok = False
        return ok

    def branch_detail(self, branches: tuple[Node, ...], value: JsonValue, hops: int, loc: Loc) -> str:
        """Why the first few branches failed: what a model needs to fix its answer.

        One reason per branch, and none for branches nested inside a branch, so that the
        cost stays linear even for deeply nested `anyOf`s.
        """
        if self.explaining:
            return ""
        self.explaining, saved_cap, self.cap = True, self.cap, 1
        reasons: list[str] = []
        try:
            for index, branch in enumerate(branches[:3]):
                found: list[_Error] = []
                self.check(branch, value, hops + 1, loc, found)
                if found:
                    where, _, message, _ = found[0]
                    at = "" if where == loc else f" at {_loc_text(where[len(loc) :])}"
                    reasons.append(f"{index}{at}: {message}")
        finally:
            self.explaining, self.cap = False, saved_cap
        return (" (" + "; ".join(reasons) + ")") if reasons else ""

    def string(self, node: Node, value: str, loc: Loc, errors: list[_Error] | None) -> bool:
        ok = True
        if node.min_length is not None and len(value) < node.min_length:
            if errors is None:
                return False
            message = f"String should have at least {node.min_length} characters"
            errors.append((loc, "minLength", message, value))
            ok = False
        if node.max_length is not None and len(value) > node.max_length:
            if errors is None:
                return False
            message = f"String should have at most {node.max_length} characters"
            errors.append((loc, "maxLength", message, value))
            ok = False
        if node.pattern is not None and not node.pattern.search(value):
            if errors is None:
                return False
            errors.append((loc, "pattern", f"String should match pattern '{node.pattern.source}'", value))
            ok = False
        if node.format_check is not None and not node.format_check(value):
            if errors is None:
                return False
            errors.append((loc, "format", f"Input should be a valid '{node.format}' string", value))
            ok = False
        return ok

    def number(self, node: Node, value: int | float, loc: Loc, errors: list[_Error] | None) -> bool:
        failures: list[tuple[str, str]] = []
        if node.minimum is not None and value < node.minimum:
            failures.append(("minimum", f"greater than or equal to {node.minimum}"))
        if node.exclusive_minimum is not None and value <= node.exclusive_minimum:
            failures.append(("exclusiveMinimum", f"greater than {node.exclusive_minimum}"))
        if node.maximum is not None and value > node.maximum:
            failures.append(("maximum", f"less than or equal to {node.maximum}"))
        if node.exclusive_maximum is not None and value >= node.exclusive_maximum:
            failures.append(("exclusiveMaximum", f"less than {node.exclusive_maximum}"))
        if node.multiple_of is not None and not _is_multiple(value, node.multiple_of):
            failures.append(("multipleOf", f"a multiple of {node.multiple_of}"))
        if failures and errors is not None:
            errors.extend((loc, keyword, f"Input should be {words}", value) for keyword, words in failures)
        return not failures

    def object(self, node: Node, value: JsonObject, hops: int, loc: Loc, errors: list[_Error] | None) -> bool:
        ok = True
        properties = node.properties
        for name, subschema in properties.items():
            if name in value:
                where = (*loc, name) if errors is not None else loc
                if not self.check(subschema, value[name], hops + 1, where, errors):
                    if errors is None:
                        return False
                    ok = False
        for name in node.required:
            if name not in value:
                if errors is None:
                    return False
                errors.append(((*loc, name), "missing", "Field required", value))
                ok = False
        additional = node.additional
        if additional is not None and not additional.accept_all:
            for name, item in value.items():
                if name in properties:
                    continue
                where = (*loc, name) if errors is not None else loc
                if additional.reject_all:
                    if errors is None:
                        return False
                    errors.append((where, "additionalProperties", "Extra inputs are not permitted", item))
                    ok = False
                elif not self.check(additional, item, hops + 1, where, errors):
                    if errors is None:
                        return False
                    ok = False
        return ok

    def array(
        self, node: Node, value: list[JsonValue], hops: int, loc: Loc, errors: list[_Error] | None
    ) -> bool:
        ok = True
        if node.items is not None:
            for index, item in enumerate(value):
                where = (*loc, index) if errors is not None else loc
                if not self.check(node.items, item, hops + 1, where, errors):
                    if errors is None:
                        return False
                    ok = False
        if node.min_items is not None and len(value) < node.min_items:
            if errors is None:
                return False
            errors.append((loc, "minItems", f"List should have at least {node.min_items} items", value))
            ok = False
        if node.max_items is not None and len(value) > node.max_items:
            if errors is None:
                return False
            errors.append((loc, "maxItems", f"List should have at most {node.max_items} items", value))
            ok = False
        if node.unique_items and not _unique(value):
            if errors is None:
                return False
            errors.append((loc, "uniqueItems", "List items should be unique", value))
            ok = False
        return ok


# --- instances -------------------------------------------------------------------------


def copy_instance(data: object, max_depth: int) -> tuple[JsonValue, _Error | None]:
    """A private plain-JSON copy of `data`, or why it is not a JSON value.

    Iterative, so any input depth is refused without recursion; copying means that what
    was validated is what gets stored, whatever the caller does with `data` later.
    """
    root: list[JsonValue] = [None]
    stack: list[tuple[object, list[JsonValue] | dict[str, JsonValue], str | int, Loc]] = [(data, root, 0, ())]
    while stack:
        value, parent, key, loc = stack.pop()
        kind = type(value)
        copy: JsonValue
        if kind is dict:
            if len(loc) >= max_depth:
                return None, (loc, "json_depth", f"Input is nested deeper than {max_depth} levels", None)
            source = cast(dict[object, object], value)
            # Keys first, in order, values as they are reached: the copy keeps the order.
            copy = dict.fromkeys(cast(dict[str, object], source))
            for name, item in source.items():
                if type(name) is not str:
                    return None, (loc, "json_type", "Object keys should be strings", None)
                if (problem := json_domain_error(name)) is not None:
                    return None, ((*loc, name), "json_type", f"Input should be JSON: {problem}", None)
                stack.append((item, copy, name, (*loc, name)))
        elif kind is list:
            if len(loc) >= max_depth:
                return None, (loc, "json_depth", f"Input is nested deeper than {max_depth} levels", None)
            items = cast(list[object], value)
            copy = [None] * len(items)
            stack.extend((item, copy, index, (*loc, index)) for index, item in enumerate(items))
        else:
            if (problem := json_domain_error(value)) is not None:
                return None, (loc, "json_type", f"Input should be JSON: {problem}", None)
            copy = cast(JsonValue, value)
        if isinstance(parent, dict):
            parent[cast(str, key)] = copy
        else:
            parent[cast(int, key)] = copy
    return root[0], None


def _raise(title: str, errors: list[_Error]) -> ValidationError:
    line_errors = [
        InitErrorDetails(type=PydanticCustomError(kind, message), loc=loc, input=value)
        for loc, kind, message, value in errors[:_MAX_ERRORS]
    ]
    return ValidationError.from_exception_data(title, line_errors)


@dataclass(frozen=True, slots=True, eq=False)
class InstanceValidator:
    """Validates instances against a compiled schema; raises pydantic `ValidationError`."""

    root: Node
    title: str
    max_depth: int

    def validate(self, data: object) -> JsonObject:
        """A private copy of `data` if it is valid; else `ValidationError` with locations."""
        copy, problem = copy_instance(data, self.max_depth)
        if problem is not None:
            raise _raise(self.title, [problem])
        evaluation = _Evaluation()
        try:
            if evaluation.check(self.root, copy, 0, (), None):
                return cast(JsonObject, copy)  # the root schema requires an object
            errors: list[_Error] = []
            evaluation.check(self.root, copy, 0, (), errors)
        except (_TooDeepError, RecursionError):
            errors = [((), "json_depth", "Input is nested too deeply for this schema", None)]
        raise _raise(self.title, errors or [((), "invalid", "Input is not valid", copy)])

    def is_valid(self, data: JsonValue) -> bool:
        """Whether an already plain JSON value is valid (no copy, no error details)."""
        return node_accepts(self.root, data)


def node_accepts(node: Node, value: JsonValue) -> bool:
    """Whether a plain JSON value is valid against one subschema."""
    try:
        return _Evaluation().check(node, value, 0, (), None)
    except (_TooDeepError, RecursionError):
        return False


# --- building --------------------------------------------------------------------------


_NUMBER_ATTRIBUTES: Final = {
    "minimum": "minimum",
    "maximum": "maximum",
    "exclusiveMinimum": "exclusive_minimum",
    "exclusiveMaximum": "exclusive_maximum",
    "multipleOf": "multiple_of",
}


def _non_negative(value: JsonValue) -> int:
    return int(cast(int | float, value))


def _build(value: JsonValue, pointer: str, checked: CheckedSchema, refs: list[tuple[Node, str, str]]) -> Node:
    """One node per subschema (recursion depth is bounded by the budget's max_depth)."""
    node = Node(pointer)
    if value is True:
        node.accept_all = True
        return node
    if value is False:
        node.reject_all = True
        return node
    schema = cast(JsonObject, value)
    if all(key in ANNOTATIONS or key in _NON_ANNOTATIONS_IGNORED for key in schema):
        node.accept_all = True
    for key, argument in schema.items():
        where = join_pointer(pointer, key)
        if key == "type":
            node.types = (argument,) if isinstance(argument, str) else tuple(cast(list[str], argument))
        elif key == "enum":
            node.enum = tuple(cast(list[JsonValue], argument))
            node.enum_keys = frozenset(json_key(option) for option in node.enum)
        elif key == "const":
            node.const, node.const_key = argument, json_key(argument)
        elif key == "minLength":
            node.min_length = _non_negative(argument)
        elif key == "maxLength":
            node.max_length = _non_negative(argument)
        elif key == "minItems":
            node.min_items = _non_negative(argument)
        elif key == "maxItems":
            node.max_items = _non_negative(argument)
        elif key == "pattern":
            node.pattern = checked.patterns[pointer]
        elif key == "format":
            node.format = cast(str, argument)
            node.format_check = _format_function(checked, node.format)
        elif key in _NUMBER_ATTRIBUTES:
            setattr(node, _NUMBER_ATTRIBUTES[key], argument)
        elif key == "uniqueItems":
            node.unique_items = bool(argument)
        elif key == "required":
            node.required = tuple(cast(list[str], argument))
        elif key == "properties":
            node.properties = {
                name: _build(sub, join_pointer(where, name), checked, refs)
                for name, sub in cast(JsonObject, argument).items()
            }
        elif key == "additionalProperties":
            node.additional = _build(argument, where, checked, refs)
        elif key == "items":
            node.items = _build(argument, where, checked, refs)
        elif key in ("anyOf", "oneOf"):
            branches = tuple(
                _build(sub, join_pointer(where, index), checked, refs)
                for index, sub in enumerate(cast(list[JsonValue], argument))
            )
            if key == "anyOf":
                node.any_of = branches
            else:
                node.one_of = branches
        elif key == "$ref":
            _, container, name = split_ref(cast(str, argument))
            refs.append((node, container, name))
    return node


def split_ref(ref: str) -> tuple[str, str, str]:
    # Same decoding as the walk (and as referencing): percent-decode, split, unescape.
    container, _, name = unquote(ref[2:]).partition("/")
    return ref, container, name.replace("~1", "/").replace("~0", "~")


def _format_function(checked: CheckedSchema, name: str) -> Callable[[str], bool]:
    checker = format_checker(checked.draft)

    def conforms(value: str) -> bool:
        try:
            return bool(checker.conforms(value, name))
        except Exception:  # the reference would crash: such a value is not accepted
            return False

    return conforms


def _check_chains(nodes: list[Node], limit: int) -> None:
    """Reject same-value cycles (infinite loops) and over-long same-value chains.

    Iterative depth-first search over `$ref`/`anyOf`/`oneOf` edges; `longest` is the
    number of nested evaluations one instance value can cause.
    """
    state: dict[int, int] = {}  # 1: on the stack, 2: done
    longest: dict[int, int] = {}
    for start in nodes:
        if id(start) in state:
            continue
        state[id(start)] = 1
        stack: list[tuple[Node, list[Node]]] = [(start, start.successors())]
        while stack:
            node, pending = stack[-1]
            if pending:
                successor = pending.pop()
                seen = state.get(id(successor))
                if seen == 1:
                    message = "'$ref' cycle that never descends into the value (infinite recursion)"
                    raise SchemaError(node.edge_pointer(successor), message)
                if seen is None:
                    state[id(successor)] = 1
                    stack.append((successor, successor.successors()))
                continue
            stack.pop()
            state[id(node)] = 2
            length = 1 + max((longest[id(s)] for s in node.successors()), default=0)
            longest[id(node)] = length
            if length > limit:
                message = f"chain of '$ref'/'anyOf'/'oneOf' on one value is longer than {limit}"
                raise SchemaError(node.pointer, message)


def build_graph(checked: CheckedSchema, budget: SchemaBudget) -> Node:
    """Compile a checked schema into linked nodes; reject same-value reference cycles."""
    del budget  # the chain limit is internal (it protects the evaluator's stack)
    refs: list[tuple[Node, str, str]] = []
    root = _build(checked.document, "", checked, refs)
    defs: dict[tuple[str, str], Node] = {}
    for container in ("$defs", "definitions"):
        entries = checked.document.get(container)
        if isinstance(entries, dict):
            for name, sub in entries.items():
                node = _build(sub, join_pointer("", container, name), checked, refs)
                node.shared = True
                defs[(container, name)] = node
    all_nodes = [root, *defs.values()]
    for node, container, name in refs:
        node.ref = defs[(container, name)]
    _check_chains(all_nodes, _MAX_CHAIN)
    return root
