"""The rule, as properties: the compiled type accepts an instance exactly when jsonschema does.

Schemas are generated inside the supported subset (nested objects, arrays, enums,
consts, numeric bounds with ints and floats, multipleOf, string lengths, simple
patterns, formats, anyOf/oneOf, nullable types, `$defs`/`$ref` including recursion,
additionalProperties, required, both drafts); instances are generated *near* each
schema: mostly valid, with mutations that hit the usual traps (bools for numbers, 1.0
for integers, huge integers, floats on exclusive bounds, astral characters, missing
required, extra properties, duplicates such as 1 / 1.0 / true under uniqueItems).

The reference is `validator_for(schema)` with the draft's FORMAT_CHECKER and an empty
`referencing.Registry()`; both `validate_python` and `validate_json` are compared, and
an accepted instance must come back unchanged and still valid.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from typing import Any
from urllib.parse import quote, unquote

import pytest
import referencing
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from jsonschema import validators
from pydantic import ValidationError

from services.agent_svc._schema_regex import PatternRejected, compile_pattern
from services.agent_svc.schema_compiler import CompiledSchema, SchemaCompiler, SchemaError, example_instance

Json = Any  # test data: any JSON value

COMPILER = SchemaCompiler(cache_size=64)
SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

# --- building blocks -------------------------------------------------------------------

PROPERTY_NAMES = [
    "a", "b", "name", "model_config", "schema", "copy", "class", "first-name", "", "ünï", "$ref",
    "properties", "type", "a b", "root", "__init__", "x" * 3, "0",
]  # fmt: skip
PATTERNS = [
    "^a", "b$", "^[a-z]+$", "^\\d{2,3}$", "\\w", "^\\s*$", "x|y", "^(ab)+$", "[^a]", "\\S+",
    "^.{2}$", "^[0-9a-f]{4}\\Z", "é", "^\\D", "a*b?c+", "\\W$", "", "^[\\w.-]+@",
]  # fmt: skip
STRINGS = [
    "", "a", "ab", "abc", "A", "12", "123", "1234", "x", "y", "ababab", "é", "😀", "😀😀", "a😀",
    "٣٤", "\u0301", "a\u0301", "\x1c", " \t\n", "a\n", "b\n", "\n", "_", "a.b@c", "b", "zz",
    "0f0f", "00ff\n", "ñ", "ǅ", "\u2028", "a@b", "https://example.com/a", "urn:x", "no spaces",
    "1970-01-01", "2024-02-30", "1970-01-01T00:00:00Z", "1970-01-01t00:00:00z", "1970-01-01T00:00:00",
    "00000000-0000-4000-8000-000000000000", "00000000000040008000000000000000",
    "{00000000-0000-4000-8000-000000000000}",
]  # fmt: skip
TRICKY = [
    True, False, None, 0, 1, -1, 1.0, -0.0, 0.5, 2, 2.0, 3, 10, 1e20, 2**53 + 1, 10**30, -(10**30),
    1.5, 0.1, 0.3, 0.30000000000000004, "1", "true", "", [], {}, [1], [1, 1.0], [1, True], [0, False],
    {"a": 1}, {"a": 1.0}, [[1], [True], [1]], [{"a": 1}, {"a": 1.0}],
]  # fmt: skip
MULTIPLES = [1, 2, 3, 0.5, 0.1, 2.5, 0.25, 1.5, 0.01, 7, 0.7]
UNIQUE_TRAPS = [
    [[1], [True], [1]], [1, True], [1, 1.0], [0, False], [True, True], [None, None], [[], []], [{}, {}],
    [{"a": 1}, {"a": True}, {"a": 1}], [[1, "a"], [1.0, "a"]], ["a", "a"], ["1", 1], [[1], [1.0]],
    [{"a": [1]}, {"a": [1.0]}], [{"a": 1, "b": 2}, {"b": 2, "a": 1}], [0, -0.0], [2**53 + 1, float(2**53)],
]  # fmt: skip
FORMATS_2020 = ["date-time", "date", "email", "uri", "uuid"]
FORMATS_07 = ["date-time", "date", "email", "uri"]


def scalars() -> st.SearchStrategy[Json]:
    return st.one_of(
        st.sampled_from(TRICKY[:22]),
        st.integers(-5, 5),
        st.sampled_from(STRINGS),
    )


def json_values(max_leaves: int = 6) -> st.SearchStrategy[Json]:
    return st.recursive(
        scalars(),
        lambda children: st.one_of(
            st.lists(children, max_size=3),
            st.dictionaries(st.sampled_from(["a", "b", "c"]), children, max_size=3),
        ),
        max_leaves=max_leaves,
    )


class Ctx:
    """What a subschema may reference, by draft."""

    def __init__(self, draft07: bool, defs: list[str]) -> None:
        self.draft07 = draft07
        self.defs = defs
        self.container = "definitions" if draft07 else "$defs"

    def ref(self, name: str) -> str:
        return f"#/{self.container}/{quote(name.replace('~', '~0').replace('/', '~1'))}"


@st.composite
def number_keywords(draw: st.DrawFn) -> dict[str, Json]:
    out: dict[str, Json] = {}
    low = draw(st.sampled_from([None, -3, 0, 0.5, 1, 2.0, -1.5]))
    high = draw(st.sampled_from([None, 3, 10, 2.5, 100, 1.0]))
    if low is not None:
        out[draw(st.sampled_from(["minimum", "exclusiveMinimum"]))] = low
    if high is not None:
        out[draw(st.sampled_from(["maximum", "exclusiveMaximum"]))] = high
    if draw(st.booleans()):
        out["multipleOf"] = draw(st.sampled_from(MULTIPLES))
    return out


@st.composite
def string_keywords(draw: st.DrawFn, ctx: Ctx) -> dict[str, Json]:
    out: dict[str, Json] = {}
    if draw(st.booleans()):
        out["minLength"] = draw(st.sampled_from([0, 1, 2, 3, 2.0]))
    if draw(st.booleans()):
        out["maxLength"] = draw(st.sampled_from([0, 1, 2, 4, 10, 3.0]))
    if draw(st.integers(0, 3)) == 0:
        out["pattern"] = draw(st.sampled_from(PATTERNS))
    if draw(st.integers(0, 3)) == 0:
        out["format"] = draw(st.sampled_from(FORMATS_07 if ctx.draft07 else FORMATS_2020))
    return out


@st.composite
def annotation_keywords(draw: st.DrawFn) -> dict[str, Json]:
    out: dict[str, Json] = {}
    if draw(st.integers(0, 4)) == 0:
        out["description"] = draw(st.sampled_from(["a thing", "ünïcode ✓", ""]))
    if draw(st.integers(0, 6)) == 0:
        out["title"] = "T"
    if draw(st.integers(0, 6)) == 0:
        out["default"] = draw(json_values(3))
    if draw(st.integers(0, 8)) == 0:
        out["examples"] = draw(st.lists(json_values(2), max_size=2))
    return out


@st.composite
def subschema(draw: st.DrawFn, ctx: Ctx, depth: int, same_value_refs: list[str]) -> Json:
    """A subschema; `same_value_refs` are the definitions it may reference without descending."""
    kinds = ["leaf", "leaf", "leaf", "enum", "const", "object", "array", "anyOf", "oneOf", "bool"]
    if same_value_refs:
        kinds += ["ref", "ref"]
    if depth >= 3:
        kinds = ["leaf", "enum", "const", "bool"] + (["ref"] if same_value_refs else [])
    kind = draw(st.sampled_from(kinds))
    schema: dict[str, Json]
    if kind == "bool":
        return draw(st.sampled_from([True, True, False]))
    if kind == "ref":
        schema = {"$ref": ctx.ref(draw(st.sampled_from(same_value_refs)))}
        if not ctx.draft07 and draw(st.integers(0, 3)) == 0:
            schema.update(draw(string_keywords(ctx)) or {"minLength": 1})
    elif kind == "enum":
        schema = {"enum": draw(st.lists(json_values(3), min_size=1, max_size=4))}
    elif kind == "const":
        schema = {"const": draw(json_values(3))}
    elif kind == "object":
        schema = draw(object_schema(ctx, depth))
    elif kind == "array":
        schema = {"type": "array"} if draw(st.booleans()) else {}
        if draw(st.integers(0, 2)):
            schema["items"] = draw(subschema(ctx, depth + 1, ctx.defs))
        if draw(st.booleans()):
            schema["minItems"] = draw(st.sampled_from([0, 1, 2]))
        if draw(st.booleans()):
            schema["maxItems"] = draw(st.sampled_from([1, 2, 3]))
        unique = draw(st.sampled_from([None, True, True, False]))
        if unique is not None:
            schema["uniqueItems"] = unique
    elif kind in ("anyOf", "oneOf"):
        branches = draw(st.lists(subschema(ctx, depth + 1, same_value_refs), min_size=1, max_size=3))
        schema = {kind: branches}
        if draw(st.integers(0, 3)) == 0:
            schema["type"] = draw(st.sampled_from(["string", "number", ["integer", "null"]]))
    else:
        schema = draw(leaf_schema(ctx))
    if not (ctx.draft07 and "$ref" in schema):
        schema.update(draw(annotation_keywords()))
    return schema


@st.composite
def leaf_schema(draw: st.DrawFn, ctx: Ctx) -> dict[str, Json]:
    types = draw(
        st.sampled_from(
            [
                "string", "integer", "number", "boolean", "null",
                ["string", "null"], ["integer", "string"], ["number", "null"], ["integer", "boolean"], None,
            ]
        )
    )  # fmt: skip
    schema: dict[str, Json] = {} if types is None else {"type": types}
    names = [types] if isinstance(types, str) else (types or ["string", "number"])
    if "string" in names:
        schema.update(draw(string_keywords(ctx)))
    if "integer" in names or "number" in names:
        schema.update(draw(number_keywords()))
    return schema


@st.composite
def object_schema(draw: st.DrawFn, ctx: Ctx, depth: int, root: bool = False) -> dict[str, Json]:
    schema: dict[str, Json] = {"type": "object"} if root or draw(st.integers(0, 3)) else {}
    names: list[str] = draw(st.lists(st.sampled_from(PROPERTY_NAMES), unique=True, max_size=4))
    empty_properties: bool = draw(st.booleans())
    if names or empty_properties:
        schema["properties"] = {name: draw(subschema(ctx, depth + 1, ctx.defs)) for name in names}
    required = [name for name in names if draw(st.booleans())]
    if draw(st.integers(0, 5)) == 0:
        required.append("zz")
    if required:
        schema["required"] = required
    extra = draw(st.sampled_from(["absent", "absent", "true", "false", "schema"]))
    if extra == "true":
        schema["additionalProperties"] = True
    elif extra == "false":
        schema["additionalProperties"] = False
    elif extra == "schema":
        schema["additionalProperties"] = draw(subschema(ctx, depth + 1, ctx.defs))
    return schema


@st.composite
def root_schemas(draw: st.DrawFn) -> dict[str, Json]:
    draft07 = draw(st.integers(0, 4)) == 0
    names = draw(st.lists(st.sampled_from(["node", "leaf", "a b", "x/y", "t~1"]), unique=True, max_size=3))
    ctx = Ctx(draft07, names)
    defs: dict[str, Json] = {}
    for index, name in enumerate(names):
        # Without descending, a definition may only reference earlier ones (no cycle
        # that never consumes input: the compiler refuses those, as it should).
        if draw(st.booleans()):
            defs[name] = draw(object_schema(ctx, 1))
        else:
            defs[name] = draw(subschema(ctx, 1, names[:index]))
    schema = draw(object_schema(ctx, 0, root=True))
    if defs:
        schema[ctx.container] = defs
    if draft07:
        schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    elif draw(st.integers(0, 4)) == 0:
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


# --- instances near a schema -----------------------------------------------------------


def _resolve(schema: dict[str, Json], root: dict[str, Json]) -> dict[str, Json] | bool:
    ref = schema["$ref"]
    container, name = ref[2:].split("/", 1)
    name = unquote(name).replace("~1", "/").replace("~0", "~")
    target: dict[str, Json] | bool = root[container][name]
    return target


def _strings_for(schema: dict[str, Json]) -> list[str]:
    """Strings around the schema's boundaries (lengths, pattern, format)."""
    low = int(schema.get("minLength", 0))
    high = int(schema.get("maxLength", 6))
    out = [char * n for n in {low - 1, low, high, high + 1} if n >= 0 for char in ("a", "😀", "é")]
    if "pattern" in schema:
        examples = list(compile_pattern(schema["pattern"], 10**6).examples(low))[:6]
        # Python's `$` also matches before a final newline; the classic trap.
        out += examples + [text + "\n" for text in examples] + ["x" + text for text in examples]
    if "format" in schema:
        out += STRINGS[-11:]
    return out


def _numbers_for(schema: dict[str, Json]) -> list[Json]:
    """Numbers around the schema's boundaries (bounds, nearby floats, multiples)."""
    out: list[Json] = []
    for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        if key in schema:
            bound = schema[key]
            out += [bound, bound + 1, bound - 1, float(bound), math.nextafter(float(bound), math.inf)]
            if float(bound).is_integer():
                out.append(int(bound))
    if "multipleOf" in schema:
        step = schema["multipleOf"]
        out += [step * k for k in (0, 1, 2, 3, 7, -2)] + [round(step * 3, 10), step * 3 + 0.01]
        # Where float division rounds (7 / 0.1 == 70.0) and where it does not (3 / 0.1).
        out += [3, 7, 10, 70, 100, 0.3, 0.7, 1.1, 2.2, 0.35, 1e16, 2**60, 10**20]
    return out or [0, 1, -1]


@st.composite
def near(draw: st.DrawFn, schema: Json, root: dict[str, Json], depth: int = 0) -> Json:
    """A value that is valid more often than not, with the classic mutations mixed in."""
    if depth > 5 or draw(st.integers(0, 15)) == 0:
        return draw(st.sampled_from(TRICKY))
    if not isinstance(schema, dict):
        return draw(json_values(3))
    if "$ref" in schema and draw(st.integers(0, 3)):
        return draw(near(_resolve(schema, root), root, depth + 1))
    if "enum" in schema and draw(st.integers(0, 3)):
        option = draw(st.sampled_from(schema["enum"]))
        return draw(st.sampled_from([option, option, _mutate_equal(option)]))
    if "const" in schema and draw(st.integers(0, 3)):
        return draw(st.sampled_from([schema["const"], _mutate_equal(schema["const"])]))
    for key in ("anyOf", "oneOf"):
        if key in schema and draw(st.integers(0, 3)):
            return draw(near(draw(st.sampled_from(schema[key])), root, depth + 1))
    types = schema.get("type")
    names = [types] if isinstance(types, str) else (types or [])
    if not names:
        if "properties" in schema or "required" in schema or "additionalProperties" in schema:
            names = ["object"]
        elif "items" in schema or "minItems" in schema or "uniqueItems" in schema:
            names = ["array"]
        elif "minLength" in schema or "pattern" in schema or "format" in schema:
            names = ["string"]
        elif "minimum" in schema or "multipleOf" in schema or "maximum" in schema:
            names = ["number"]
        else:
            names = ["null", "string", "object"]
    kind = draw(st.sampled_from(names))
    if kind == "string":
        return draw(st.one_of(st.sampled_from(_strings_for(schema)), st.sampled_from(STRINGS)))
    if kind in ("integer", "number"):
        return draw(st.one_of(st.sampled_from(_numbers_for(schema)), st.sampled_from(TRICKY[:22])))
    if kind == "boolean":
        return draw(st.booleans())
    if kind == "null":
        return None
    if kind == "array":
        if schema.get("uniqueItems") and draw(st.integers(0, 2)) == 0:
            return draw(st.sampled_from(UNIQUE_TRAPS))
        size = draw(st.integers(max(0, schema.get("minItems", 0) - 1), schema.get("maxItems", 3) + 1))
        items = [draw(near(schema.get("items", True), root, depth + 1)) for _ in range(size)]
        if items and schema.get("uniqueItems") and draw(st.booleans()):
            items.append(_mutate_equal(draw(st.sampled_from(items))))
        return items
    value: dict[str, Json] = {}
    properties = schema.get("properties", {})
    required = schema.get("required", [])
    for name, sub in properties.items():
        if draw(st.integers(0, 15)) < (15 if name in required else 9):
            value[name] = draw(near(sub, root, depth + 1))
    for name in required:
        if name not in value and draw(st.integers(0, 7)):
            value[name] = draw(near(schema.get("additionalProperties", True), root, depth + 1))
    if draw(st.integers(0, 5)) == 0:
        extra = draw(st.sampled_from(["extra", "zz", "model_config", "a"]))
        value[extra] = draw(near(schema.get("additionalProperties", True), root, depth + 1))
    return value


def _mutate_equal(value: Json) -> Json:
    """A value the reference may or may not consider equal: the uniqueItems/enum traps."""
    if value is True:
        return 1
    if value is False:
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value) if abs(value) < 2**53 else value
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, list):
        return [_mutate_equal(item) for item in value]
    if isinstance(value, dict):
        return {key: _mutate_equal(item) for key, item in value.items()}
    return value


# --- the comparison --------------------------------------------------------------------


def reference(schema: dict[str, Json]) -> Any:
    cls = validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER, registry=referencing.Registry())


def compile_or_skip(schema: dict[str, Json]) -> CompiledSchema:
    try:
        return COMPILER.compile(schema)
    except SchemaError as error:
        # Generated schemas are meant to be inside the subset; the generator avoids
        # everything the compiler refuses except unsatisfiable-by-chance corners.
        raise AssertionError(f"supported schema refused: {error}\n{json.dumps(schema)}") from error


def assert_same_answer(compiled: CompiledSchema, schema: dict[str, Json], ref: Any, instance: Json) -> None:
    expected = ref.is_valid(instance)
    refusal: ValidationError | None = None
    try:
        stored = compiled.validate_python(instance)
        accepted = True
    except ValidationError as error:
        accepted, refusal = False, error
    assert refusal is None or refusal.errors(), "a refusal must say where and why"
    text = json.dumps(instance)
    try:
        from_json = compiled.validate_json(text)
        accepted_json = True
    except ValidationError:
        accepted_json = False
    context = f"\nschema: {json.dumps(schema)}\ninstance: {text}\nreference: {expected}"
    assert accepted == expected, f"validate_python disagrees{context}"
    assert accepted_json == expected, f"validate_json disagrees{context}"
    if accepted:
        # What is stored is what the model returned: same JSON, same types, still valid.
        assert json.dumps(stored) == text, context
        assert json.dumps(from_json) == text, context
        assert _same_types(stored, instance), context
        assert ref.is_valid(stored), context


def _same_types(one: Json, two: Json) -> bool:
    if type(one) is not type(two):
        return False
    if isinstance(one, list):
        return all(_same_types(a, b) for a, b in zip(one, two, strict=True))
    if isinstance(one, dict):
        return list(one) == list(two) and all(_same_types(one[k], two[k]) for k in one)
    return bool(one == two)


@st.composite
def mutated(draw: st.DrawFn, value: Json) -> Json:
    """One mutation somewhere inside a (valid) value."""
    if isinstance(value, dict) and value and draw(st.integers(0, 2)):
        key = draw(st.sampled_from(sorted(value)))
        action = draw(st.sampled_from(["descend", "descend", "drop", "equal"]))
        if action == "drop":
            return {k: v for k, v in value.items() if k != key}
        if action == "equal":
            return {**value, key: _mutate_equal(value[key])}
        return {**value, key: draw(mutated(value[key]))}
    if isinstance(value, list) and value and draw(st.integers(0, 2)):
        index = draw(st.integers(0, len(value) - 1))
        action = draw(st.sampled_from(["descend", "duplicate", "equal"]))
        if action == "duplicate":
            return [*value, _mutate_equal(value[index])]
        changed = draw(mutated(value[index])) if action == "descend" else _mutate_equal(value[index])
        return [*value[:index], changed, *value[index + 1 :]]
    return draw(st.sampled_from([_mutate_equal(value), *TRICKY]))


@SETTINGS
@given(schema=root_schemas(), data=st.data())
def test_compiled_accepts_exactly_what_jsonschema_accepts(
    schema: dict[str, Json], data: st.DataObject
) -> None:
    compiled = compile_or_skip(schema)
    ref = reference(schema)
    try:
        example = example_instance(compiled)
    except SchemaError:
        example = None  # unsatisfiable or out of the generator's reach: covered elsewhere
    else:
        assert ref.is_valid(example), f"example instance is not valid: {example}\n{json.dumps(schema)}"
    for index in range(12):
        if example is not None and index % 3 == 0:
            instance = data.draw(mutated(example))
        else:
            instance = data.draw(near(schema, schema))
        assert_same_answer(compiled, schema, ref, instance)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=root_schemas(), data=st.data())
def test_arbitrary_json_gets_the_same_answer(schema: dict[str, Json], data: st.DataObject) -> None:
    """Far from the schema too: random JSON objects, mostly invalid."""
    compiled = compile_or_skip(schema)
    ref = reference(schema)
    for _ in range(8):
        instance = data.draw(
            st.dictionaries(st.sampled_from([*PROPERTY_NAMES, "zz"]), json_values(5), max_size=4)
        )
        assert_same_answer(compiled, schema, ref, instance)


# --- focused: one keyword family at a time, many boundary instances ---------------------


def _single(schema: Json) -> dict[str, Json]:
    return {"type": "object", "properties": {"v": schema}, "required": ["v"]}


def _check_values(schema: dict[str, Json], values: list[Json]) -> None:
    compiled = compile_or_skip(schema)
    ref = reference(schema)
    for value in values:
        assert_same_answer(compiled, schema, ref, {"v": value})


@settings(max_examples=250, deadline=None)
@given(keywords=number_keywords(), kind=st.sampled_from(["integer", "number", None]), data=st.data())
def test_numbers(keywords: dict[str, Json], kind: str | None, data: st.DataObject) -> None:
    """Bounds (inclusive/exclusive, int/float), multipleOf (the float algorithm), bools, 1.0."""
    schema = _single({**keywords, **({"type": kind} if kind else {})})
    _check_values(schema, _numbers_for(keywords) + TRICKY[:22])


@settings(max_examples=250, deadline=None)
@given(keywords=string_keywords(Ctx(False, [])), draft07=st.booleans(), data=st.data())
def test_strings(keywords: dict[str, Json], draft07: bool, data: st.DataObject) -> None:
    """Code-point lengths, patterns (`$` before a final newline, Unicode classes), formats."""
    if draft07 and keywords.get("format") == "uuid":
        keywords.pop("format")
    schema = _single({"type": "string", **keywords})
    if draft07:
        schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    _check_values(schema, _strings_for(keywords) + STRINGS)


@settings(max_examples=200, deadline=None)
@given(
    options=st.lists(json_values(4), min_size=1, max_size=5),
    which=st.sampled_from(["enum", "const", "uniqueItems"]),
    data=st.data(),
)
def test_equality(options: list[Json], which: str, data: st.DataObject) -> None:
    """JSON equality: 1 == 1.0, 1 != true, deep arrays/objects, the reference's uniq quirk."""
    if which == "enum":
        schema = _single({"enum": options})
    elif which == "const":
        schema = _single({"const": options[0]})
    else:
        schema = _single({"type": "array", "uniqueItems": True})
    values = options + [_mutate_equal(option) for option in options] + UNIQUE_TRAPS + TRICKY
    _check_values(schema, values)


# --- patterns: the Rust translation matches exactly what Python's re finds --------------

PATTERN_ATOMS = [
    "a", "b", "é", "😀", ".", "\\d", "\\D", "\\w", "\\W", "\\s", "\\S", "[a-c]", "[^a]", "[\\d_]",
    "[^\\W\\d]", "\\.", "\\n", "\\x41", "\\u00e9", "[-a]", "[a-]", "\\\\", "\\$", "[\\s\\S]", "\\-",
    "[.]", "[$^]", "[a^]", "[\\]a]", "[\\x41-\\x5a]", "[\\-\\]]", "[é-ü]", "[😀-😂]", "\\^", "\\/", "\\ ",
    "[ ]", "\\#", "[^\\n]", "[\\t-\\r]", "\\U0001F600", "[\\\\]", "[|]", "\\|", "\\(\\)", "[(){}*+?]",
]  # fmt: skip
REGEX_ALPHABET = "ab é😀😁0٣_-.\n\t\x1c\u2028A\\$\u0301ǅ^]/#üZ|(){}*+?\r"


@st.composite
def patterns(draw: st.DrawFn, depth: int = 0) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        if depth < 2 and draw(st.integers(0, 4)) == 0:
            inner = "|".join(draw(st.lists(patterns(depth + 1), min_size=1, max_size=3)))
            atom = draw(st.sampled_from(["(", "(?:"])) + inner + ")"
        else:
            atom = draw(st.sampled_from(PATTERN_ATOMS))
        atom += draw(
            st.sampled_from(
                ["", "", "", "*", "+", "?", "{2}", "{1,3}", "{0,}", "*?", "+?", "{0}", "{3,}", "??"]
            )
        )
        parts.append(atom)
    text = "".join(parts)
    if draw(st.booleans()):
        text = "^" + text
    if draw(st.booleans()):
        text += draw(st.sampled_from(["$", "\\Z", "\\A"]))
    if draw(st.integers(0, 5)) == 0:
        text += "|" + draw(patterns(depth + 1))
    return text


@settings(max_examples=300, deadline=None)
@given(
    pattern=patterns(), texts=st.lists(st.text(alphabet=REGEX_ALPHABET, max_size=8), min_size=1, max_size=25)
)
def test_pattern_translation_matches_python_re(pattern: str, texts: list[str]) -> None:
    try:
        compiled = compile_pattern(pattern, 10**6)
    except PatternRejected:
        assume(False)
    for text in texts:
        assert compiled.search(text) == (re.search(pattern, text) is not None), (pattern, text, compiled.rust)


_ORACLE_MAX_TEXT = 12
"""Longest example checked against Python's `re`, which backtracks: a generated nested
quantifier such as `([^\\n]{1,3}[\\s\\S]?)+` on a 35-character example did not finish in
minutes (it stalled a CI run)."""


@settings(max_examples=100, deadline=None)
@given(pattern=patterns(), data=st.data())
def test_pattern_examples_match(pattern: str, data: st.DataObject) -> None:
    """The example strings offered for a pattern are verified by the caller, but should mostly match."""
    try:
        compiled = compile_pattern(pattern, 10**6)
    except PatternRejected:
        assume(False)
    for text in itertools.islice(compiled.examples(), 5):
        if len(text) > _ORACLE_MAX_TEXT:
            continue
        assert compiled.search(text) == (re.search(pattern, text) is not None)


@pytest.mark.parametrize("category", ["d", "w", "s"])
def test_categories_follow_python_exactly(category: str) -> None:
    """Exhaustively: every code point where Rust's native class and Python's differ is translated right."""
    compiled = compile_pattern(f"^\\{category}$", 10**6)
    python = re.compile(f"^\\{category}$")
    sample = [chr(cp) for cp in range(0, 0x3100)] + [chr(cp) for cp in range(0x10000, 0x11000, 7)]
    sample += ["\U0001e4f0", "\U00011f50", "\U0001fbf0", "\U000e0100"]
    for char in sample:
        if 0xD800 <= ord(char) <= 0xDFFF:
            continue
        assert compiled.search(char) == (python.search(char) is not None), hex(ord(char))


# --- meta-schema: the iterative checks accept only what the draft's meta-schema accepts --

META_TRAPS: dict[str, list[Json]] = {
    "type": ["strng", [], ["string", "string"], 5, ["integer", "null"], "object"],
    "minLength": [-1, 1.5, "2", True, 2.0, 0, 10**30],
    "maxItems": [-1, 0.5, None, 3.0],
    "required": ["a", ["a", "a"], [1], [], ["a", "b"]],
    "enum": [{}, "a", [], [1, 1]],
    "properties": [[], {"a": 5}, {"a": {}}, {"a": True}],
    "anyOf": [[], {}, [{}], [5]],
    "multipleOf": [0, -1, True, "1", 0.5, 1e-300],
    "minimum": ["1", True, None, 1e308, -0.0],
    "uniqueItems": [1, "true", False],
    "items": [5, "x", {}, False],
    "additionalProperties": [5, "x", {}, False],
    "$ref": [5, "#/$defs/a b", "#/$defs/node", "#/definitions/leaf"],
    "title": [5, None, "t"],
    "examples": [{}, [], [1]],
    "deprecated": ["yes", True],
    "format": [5, "date"],
    "pattern": [5, "[", "a"],
}


def _subschemas(schema: Json) -> list[dict[str, Json]]:
    found: list[dict[str, Json]] = []
    stack = [schema]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        found.append(node)
        for key in ("properties", "$defs", "definitions"):
            if isinstance(node.get(key), dict):
                stack.extend(node[key].values())
        for key in ("items", "additionalProperties"):
            stack.append(node.get(key))
        for key in ("anyOf", "oneOf"):
            if isinstance(node.get(key), list):
                stack.extend(node[key])
    return found


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=root_schemas(), data=st.data())
def test_checks_accept_only_meta_valid_schemas(schema: dict[str, Json], data: st.DataObject) -> None:
    targets = _subschemas(schema)
    for _ in range(data.draw(st.integers(0, 2))):
        target = data.draw(st.sampled_from(targets))
        keyword = data.draw(st.sampled_from(sorted(META_TRAPS)))
        target[keyword] = data.draw(st.sampled_from(META_TRAPS[keyword]))
    cls = validators.validator_for(schema)
    meta_valid = cls(cls.META_SCHEMA, format_checker=cls.FORMAT_CHECKER).is_valid(schema)
    try:
        COMPILER.check(schema)
    except SchemaError:
        return  # refusing more than the meta-schema does is allowed (the subset is smaller)
    assert meta_valid, f"accepted a schema the meta-schema refuses: {json.dumps(schema)}"
