"""Schema compiler: table-driven checks, the hostile table, what the model sees, the cache.

The rule itself (exact agreement with jsonschema) is property-tested in
`test_schema_compiler_property.py`; pydantic-ai integration is in
`test_schema_compiler_agent.py`.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from typing import Any

import pytest
import referencing
from jsonschema import validators
from pydantic import TypeAdapter, ValidationError
from pydantic_ai.tools import GenerateToolJsonSchema

from services.agent_svc.schema_compiler import (
    CompiledSchema,
    SchemaBudget,
    SchemaCompiler,
    SchemaError,
    SchemaOutput,
    canonical_hash,
    example_instance,
    ordered_hash,
)

Json = Any  # test data: any JSON value
HOSTILE_SECONDS = 0.5  # generous for a loaded CI machine; typical figures are a few ms


def obj(properties: dict[str, Json], **keywords: Json) -> dict[str, Json]:
    return {"type": "object", "properties": properties, **keywords}


def one(schema: Json, **keywords: Json) -> dict[str, Json]:
    """A root object with one required property `v`."""
    return {"type": "object", "properties": {"v": schema}, "required": ["v"], **keywords}


def reference_valid(schema: dict[str, Json], instance: Json) -> bool:
    cls = validators.validator_for(schema)
    return bool(
        cls(schema, format_checker=cls.FORMAT_CHECKER, registry=referencing.Registry()).is_valid(instance)
    )


@pytest.fixture
def compiler() -> SchemaCompiler:
    return SchemaCompiler()


def llm_schema(compiled: CompiledSchema) -> dict[str, Json]:
    """The JSON Schema pydantic-ai sends to the model for this output type."""
    return TypeAdapter(compiled.output_type).json_schema(schema_generator=GenerateToolJsonSchema)


def errors_of(compiled: CompiledSchema, data: Json) -> list[tuple[tuple[str | int, ...], str]]:
    with pytest.raises(ValidationError) as caught:
        compiled.validate_python(data)
    return [(tuple(error["loc"]), error["type"]) for error in caught.value.errors()]


# --- refusals: pointer and keyword ------------------------------------------------------

REFUSED: list[tuple[str, Json, str, str]] = [
    # (id, schema, pointer, words in the message)
    ("not-an-object", ["type", "object"], "", "JSON object"),
    ("root-not-object-type", {"type": "string"}, "/type", '"type": "object"'),
    ("root-without-type", {"properties": {}}, "", '"type": "object"'),
    ("root-nullable", {"type": ["object", "null"]}, "/type", '"type": "object"'),
    (
        "unknown-dialect",
        {"type": "object", "$schema": "http://json-schema.org/draft-04/schema#"},
        "/$schema",
        "draft",
    ),
    ("not", obj({"a": {"not": {"type": "string"}}}), "/properties/a/not", "'not'"),
    ("if", obj({"a": {"if": {}, "then": {}}}), "/properties/a/if", "'if'"),
    (
        "patternProperties",
        {"type": "object", "patternProperties": {"^a": {}}},
        "/patternProperties",
        "patternProperties",
    ),
    (
        "dependentRequired",
        {"type": "object", "dependentRequired": {"a": ["b"]}},
        "/dependentRequired",
        "dependentRequired",
    ),
    ("prefixItems", obj({"a": {"prefixItems": [{}]}}), "/properties/a/prefixItems", "prefixItems"),
    ("tuple-items", obj({"a": {"items": [{}, {}]}}), "/properties/a/items", "tuple"),
    ("contains", obj({"a": {"contains": {}}}), "/properties/a/contains", "contains"),
    (
        "unevaluated",
        {"type": "object", "unevaluatedProperties": False},
        "/unevaluatedProperties",
        "unevaluated",
    ),
    ("dynamicRef", obj({"a": {"$dynamicRef": "#meta"}}), "/properties/a/$dynamicRef", "$dynamicRef"),
    ("allOf", obj({"a": {"allOf": [{}]}}), "/properties/a/allOf", "allOf"),
    (
        "unknown-keyword",
        obj({"a": {"type": "string", "maxlength": 3}}),
        "/properties/a/maxlength",
        "maxlength",
    ),
    ("unknown-format", one({"type": "string", "format": "ipv4"}), "/properties/v/format", "ipv4"),
    (
        "uuid-in-draft-07",
        one({"format": "uuid"}, **{"$schema": "http://json-schema.org/draft-07/schema#"}),
        "/properties/v/format",
        "uuid",
    ),
    ("meta-minLength", one({"type": "string", "minLength": -1}), "/properties/v/minLength", "non-negative"),
    (
        "meta-minLength-float",
        one({"type": "string", "minLength": 1.5}),
        "/properties/v/minLength",
        "non-negative",
    ),
    ("meta-type-name", one({"type": "strng"}), "/properties/v/type", "strng"),
    ("meta-type-repeat", one({"type": ["string", "string"]}), "/properties/v/type", "repeat"),
    ("meta-required-repeat", {"type": "object", "required": ["a", "a"]}, "/required", "repeat"),
    ("meta-required-type", {"type": "object", "required": "a"}, "/required", "array of strings"),
    ("meta-anyOf-empty", one({"anyOf": []}), "/properties/v/anyOf", "non-empty"),
    ("meta-multipleOf-zero", one({"multipleOf": 0}), "/properties/v/multipleOf", "greater than 0"),
    ("meta-minimum-bool", one({"minimum": True}), "/properties/v/minimum", "number"),
    ("meta-enum-type", one({"enum": "a"}), "/properties/v/enum", "array"),
    ("meta-schema-type", obj({"a": 5}), "/properties/a", "object or a boolean"),
    ("meta-title", obj({"a": {"title": 5}}), "/properties/a/title", "string"),
    ("remote-ref-http", one({"$ref": "http://example.com/s.json"}), "/properties/v/$ref", "remote"),
    (
        "remote-ref-https",
        one({"$ref": "https://example.com/s.json#/$defs/a"}),
        "/properties/v/$ref",
        "remote",
    ),
    ("file-ref", one({"$ref": "file:///etc/passwd"}), "/properties/v/$ref", "remote"),
    ("relative-ref", one({"$ref": "other.json#/$defs/a"}), "/properties/v/$ref", "local"),
    ("root-ref", one({"$ref": "#"}), "/properties/v/$ref", "root"),
    ("anchor-ref", one({"$ref": "#foo"}), "/properties/v/$ref", "anchor"),
    (
        "deep-ref",
        one({"$ref": "#/$defs/a/properties/b"}, **{"$defs": {"a": {}}}),
        "/properties/v/$ref",
        "entry",
    ),
    ("properties-ref", one({"$ref": "#/properties/v"}), "/properties/v/$ref", "$defs"),
    ("missing-ref", one({"$ref": "#/$defs/nope"}), "/properties/v/$ref", "does not exist"),
    (
        "wrong-container",
        one({"$ref": "#/definitions/a"}, **{"$defs": {"a": {}}}),
        "/properties/v/$ref",
        "does not exist",
    ),
    (
        "unencoded-ref",
        one({"$ref": "#/$defs/a b"}, **{"$defs": {"a b": {}}}),
        "/properties/v/$ref",
        "URI reference",
    ),
    ("nested-defs", obj({"a": {"$defs": {"x": {}}}}), "/properties/a/$defs", "root"),
    ("nested-id", obj({"a": {"$id": "x"}}), "/properties/a/$id", "root"),
    ("id-fragment", {"type": "object", "$id": "https://example.com/s#frag"}, "/$id", "fragment"),
    (
        "draft-07-ref-sibling",
        one(
            {"$ref": "#/definitions/a", "minLength": 1},
            **{"$schema": "http://json-schema.org/draft-07/schema#", "definitions": {"a": {}}},
        ),
        "/properties/v/minLength",
        "beside '$ref'",
    ),
    (
        "ref-cycle",
        one(
            {"$ref": "#/$defs/a"},
            **{"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"anyOf": [{"$ref": "#/$defs/a"}]}}},
        ),
        "/$defs/b/anyOf/0/$ref",
        "cycle",
    ),
    (
        "self-ref-cycle",
        one({"$ref": "#/$defs/a"}, **{"$defs": {"a": {"$ref": "#/$defs/a"}}}),
        "/$defs/a/$ref",
        "cycle",
    ),
    ("lookahead", one({"type": "string", "pattern": "a(?=b)"}), "/properties/v/pattern", "lookahead"),
    ("negative-lookahead", one({"pattern": "(?!a)"}), "/properties/v/pattern", "lookahead"),
    ("lookbehind", one({"pattern": "(?<=a)b"}), "/properties/v/pattern", "lookbehind"),
    ("negative-lookbehind", one({"pattern": "(?<!a)b"}), "/properties/v/pattern", "lookbehind"),
    ("backreference", one({"pattern": "(a)\\1"}), "/properties/v/pattern", "backreference"),
    ("named-backreference", one({"pattern": "(?P<x>a)\\k<x>"}), "/properties/v/pattern", "named groups"),
    ("k-backreference", one({"pattern": "\\k<x>"}), "/properties/v/pattern", "backreference"),
    ("inline-flag", one({"pattern": "(?i)abc"}), "/properties/v/pattern", "flags"),
    ("word-boundary", one({"pattern": "\\bword\\b"}), "/properties/v/pattern", "word boundary"),
    ("possessive", one({"pattern": "a*+"}), "/properties/v/pattern", "possessive"),
    ("atomic-group", one({"pattern": "(?>a)"}), "/properties/v/pattern", "atomic"),
    ("unicode-property", one({"pattern": "\\p{L}"}), "/properties/v/pattern", "bad escape"),
    ("invalid-regex", one({"pattern": "["}), "/properties/v/pattern", "unterminated"),
    ("dollar-in-middle", one({"pattern": "a$b"}), "/properties/v/pattern", "'$'"),
    ("set-operation", one({"pattern": "[a&&b]"}), "/properties/v/pattern", "set-operation"),
    ("huge-repeat", one({"pattern": "a{2000}"}), "/properties/v/pattern", "1000"),
    ("pattern-too-long", one({"pattern": "a" * 1001}), "/properties/v/pattern", "longer than 1000"),
    ("pattern-too-complex", one({"pattern": "(\\w{200}){5}"}), "/properties/v/pattern", "too complex"),
    ("literal-ref-in-const", one({"const": {"$ref": "#/x"}}), "/properties/v/const/$ref", "'$ref' key"),
    ("nan", one({"minimum": math.nan}), "/properties/v/minimum", "finite"),
    ("infinity", one({"maximum": math.inf}), "/properties/v/maximum", "finite"),
    ("surrogate", one({"const": "\ud800"}), "/properties/v/const", "surrogate"),
    ("huge-int", one({"const": 10**5000}), "/properties/v/const", "4300 digits"),
    ("set-value", one({"enum": [{1, 2}]}), "/properties/v/enum/0", "set"),
    ("tuple-value", one({"enum": (1, 2)}), "/properties/v/enum", "array"),
    ("non-string-key", obj({"a": {"const": {1: 2}}}), "/properties/a/const", "keys must be strings"),
]


@pytest.mark.parametrize(
    ("schema", "pointer", "words"), [case[1:] for case in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_refused_with_pointer(compiler: SchemaCompiler, schema: Json, pointer: str, words: str) -> None:
    with pytest.raises(SchemaError) as caught:
        compiler.compile(schema)
    assert caught.value.pointer == pointer
    assert words in caught.value.message
    with pytest.raises(SchemaError):
        compiler.check(schema)  # the dry run refuses the same schemas


def test_schema_error_carries_pointer_and_message() -> None:
    error = SchemaError("/properties/a/pattern", "'pattern' lookahead is not supported")
    assert (error.pointer, error.message) == ("/properties/a/pattern", "'pattern' lookahead is not supported")
    assert str(error) == "/properties/a/pattern: 'pattern' lookahead is not supported"
    assert str(SchemaError("", "x")) == "(root): x"


# --- the hostile table: refused (or compiled) fast, with the right pointer --------------


def _deep_properties(depth: int) -> dict[str, Json]:
    schema: dict[str, Json] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


def _deep_any_of(depth: int) -> dict[str, Json]:
    schema: Json = {"type": "string"}
    for _ in range(depth):
        schema = {"anyOf": [schema]}
    return one(schema)


def _deep_value(depth: int) -> Json:
    value: Json = 1
    for _ in range(depth):
        value = [value]
    return value


def _ref_bomb(levels: int) -> dict[str, Json]:
    defs: dict[str, Json] = {"a0": {"type": "string", "minLength": 2}}
    for n in range(1, levels + 1):
        previous = {"$ref": f"#/$defs/a{n - 1}"}
        defs[f"a{n}"] = {"anyOf": [previous, {"type": "array", "items": previous}]}
    return one({"$ref": f"#/$defs/a{levels}"}, **{"$defs": defs})


HOSTILE: list[tuple[str, Json, str, str]] = [
    ("10000-deep-properties", _deep_properties(10_000), "/properties/a" * 32, "deeper than 32"),
    ("10000-deep-anyOf", _deep_any_of(10_000), "/properties/v" + "/anyOf/0" * 31, "deeper than 32"),
    (
        "10000-deep-const",
        one({"const": _deep_value(10_000)}),
        "/properties/v/const" + "/0" * 32,
        "deeper than 32",
    ),
    ("100000-value-enum", one({"enum": list(range(100_000))}), "/properties/v/enum", "more than 1000"),
    ("100000-properties", obj({f"p{i}": {} for i in range(100_000)}), "/properties", "more than 200 entries"),
    (
        "100000-defs",
        {"type": "object", "$defs": {f"d{i}": {} for i in range(100_000)}},
        "/$defs",
        "larger than",
    ),
    ("huge-description", one({"description": "x" * 10_000_000}), "/properties/v/description", "larger than"),
    ("remote-ref", one({"$ref": "https://evil.example/schema.json"}), "/properties/v/$ref", "remote"),
    ("file-ref", one({"$ref": "file:///etc/passwd"}), "/properties/v/$ref", "remote"),
    (
        "lookaround",
        one({"type": "string", "pattern": "^(?=.*\\d)(?!.*(.)\\1).+$"}),
        "/properties/v/pattern",
        "lookahead",
    ),
    (
        "backreference",
        one({"type": "string", "pattern": "^(a+)\\1$"}),
        "/properties/v/pattern",
        "backreference",
    ),
    ("non-object-root", {"type": "array", "items": {}}, "/type", '"type": "object"'),
    ("bad-meta-schema", one({"type": "string", "minLength": -1}), "/properties/v/minLength", "non-negative"),
    ("unsupported-keyword", one({"type": "string", "not": {"const": ""}}), "/properties/v/not", "'not'"),
    (
        "too-many-refs",
        one({"anyOf": [{"$ref": "#/$defs/a"}] * 501}, **{"$defs": {"a": {}}}),
        "/properties/v/anyOf/500/$ref",
        "more than 500",
    ),
    (
        "too-many-nodes",
        obj({f"p{i}": {"anyOf": [{}] * 30} for i in range(200)}),
        "/properties/p161/anyOf/7",
        "more than 5000",
    ),
]


@pytest.mark.parametrize(
    ("schema", "pointer", "words"), [case[1:] for case in HOSTILE], ids=[c[0] for c in HOSTILE]
)
def test_hostile_schemas_are_refused_fast(
    compiler: SchemaCompiler, schema: Json, pointer: str, words: str
) -> None:
    started = time.perf_counter()
    with pytest.raises(SchemaError) as caught:
        compiler.compile(schema)
    elapsed = time.perf_counter() - started
    assert caught.value.pointer == pointer
    assert words in caught.value.message
    assert elapsed < HOSTILE_SECONDS, f"took {elapsed:.3f}s"


def test_ref_bomb_compiles_and_validates_fast(compiler: SchemaCompiler) -> None:
    """Each definition is an anyOf of two references to the previous one: 2**40 paths, linear work."""
    schema = _ref_bomb(40)
    started = time.perf_counter()
    compiled = compiler.compile(schema)
    rendered = llm_schema(compiled)
    assert len(rendered["$defs"]) == 41  # shared definitions, never expanded
    valid = {"v": [[["ok"]]]}
    assert compiled.validate_python(valid) == valid
    errors = errors_of(compiled, {"v": [[[1]]]})  # every path fails: the worst case
    assert errors and errors[0][0] == ("v",)
    assert example_instance(compiled) == {"v": "aa"}
    elapsed = time.perf_counter() - started
    assert elapsed < HOSTILE_SECONDS, f"took {elapsed:.3f}s"


def test_catastrophic_backtracking_pattern_runs_in_linear_time(compiler: SchemaCompiler) -> None:
    """`(a+)+$` takes exponential time in a backtracking engine; here it is matched by Rust's regex."""
    compiled = compiler.compile(one({"type": "string", "pattern": "^(a+)+$"}))
    hostile = "a" * 100_000 + "!"
    started = time.perf_counter()
    assert errors_of(compiled, {"v": hostile}) == [(("v",), "pattern")]
    assert compiled.validate_python({"v": "a" * 100_000}) == {"v": "a" * 100_000}
    assert time.perf_counter() - started < HOSTILE_SECONDS


def test_deep_instances_are_refused_fast(compiler: SchemaCompiler) -> None:
    compiled = compiler.compile(
        one(
            {"$ref": "#/$defs/tree"},
            **{"$defs": {"tree": {"type": "array", "items": {"$ref": "#/$defs/tree"}}}},
        )
    )
    for depth in (10_000, 65):
        started = time.perf_counter()
        assert errors_of(compiled, {"v": _deep_value(depth)})[0][1] == "json_depth"
        with pytest.raises(ValidationError):
            compiled.validate_json(json.dumps({"v": _deep_value(min(depth, 500))}))
        assert time.perf_counter() - started < HOSTILE_SECONDS
    nested: Json = []
    for _ in range(62):
        nested = [nested]
    assert compiled.validate_python({"v": nested})  # 64 levels with the root: max_instance_depth


def test_deep_caller_stack_gets_a_validation_error_not_a_crash(compiler: SchemaCompiler) -> None:
    """pydantic-ai calls the validator from deep inside asyncio; it must still answer cleanly."""
    compiled = compiler.compile(
        one(
            {"$ref": "#/$defs/tree"},
            **{"$defs": {"tree": {"type": "array", "items": {"$ref": "#/$defs/tree"}}}},
        )
    )
    nested: Json = []
    for _ in range(62):
        nested = [nested]

    def at_depth(frames: int) -> str:
        if frames:
            return at_depth(frames - 1)
        try:
            compiled.validate_python({"v": nested})
        except ValidationError:
            return "refused"
        return "accepted"

    assert at_depth(100) == "accepted"
    assert at_depth(850) in ("accepted", "refused")  # never RecursionError


def test_budget_is_configurable() -> None:
    small = SchemaCompiler(budget=SchemaBudget(max_depth=3, max_enum_values=2))
    with pytest.raises(SchemaError, match="deeper than 3"):
        small.compile(_deep_properties(3))
    with pytest.raises(SchemaError, match="more than 2 values"):
        small.compile(one({"enum": [1, 2, 3]}))
    assert small.compile(_deep_properties(2)).schema_hash
    with pytest.raises(ValueError, match="positive integer"):
        SchemaBudget(max_depth=0)


# --- accepted schemas: what the model sees is the task's schema ------------------------

RICH: dict[str, Json] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://agentmgr.example/schemas/person",
    "$comment": "for people",
    "title": "Person",
    "description": "A person and their address.",
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 80, "description": "Full name."},
        "age": {"type": "integer", "minimum": 0, "exclusiveMaximum": 150},
        "score": {"type": "number", "multipleOf": 0.5, "default": 1.5},
        "email": {"type": ["string", "null"], "format": "email"},
        "born": {"type": "string", "format": "date"},
        "id": {"type": "string", "format": "uuid"},
        "site": {"type": "string", "format": "uri", "examples": ["https://example.com"]},
        "seen": {"type": "string", "format": "date-time", "deprecated": True},
        "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
        "role": {"enum": ["admin", "viewer", None, 1, {"a": [1]}]},
        "kind": {"const": "person"},
        "tags": {
            "type": "array",
            "items": {"type": "string"},
            "minItems": 1,
            "maxItems": 5,
            "uniqueItems": True,
        },
        "address": {"$ref": "#/$defs/address"},
        "tree": {"$ref": "#/$defs/node"},
        "contact": {"oneOf": [{"type": "string", "format": "email"}, {"type": "integer"}]},
        "model_config": {"type": "boolean", "readOnly": True},
        "first-name": {"anyOf": [{"type": "string"}, {"type": "null"}], "writeOnly": False},
        "class": {"type": "null"},
        "$ref": {"type": "string"},
        "properties": {"type": "object", "additionalProperties": {"type": "integer"}},
    },
    "required": ["name", "age", "address"],
    "additionalProperties": False,
    "$defs": {
        "address": {
            "type": "object",
            "properties": {"zip": {"type": "string", "pattern": "^\\d{5}$"}, "city": {"type": "string"}},
            "required": ["zip"],
        },
        "node": {
            "type": "object",
            "properties": {
                "value": {"type": "integer"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
            },
        },
        "unused": {"type": "string"},
    },
}


def test_model_sees_the_task_schema(compiler: SchemaCompiler) -> None:
    compiled = compiler.compile(RICH)
    expected = json.loads(json.dumps(RICH))
    for key in ("$schema", "$id", "$comment"):
        del expected[key]
    del expected["$defs"]["unused"]  # pydantic drops definitions nothing references
    rendered = llm_schema(compiled)
    assert rendered == expected
    assert list(rendered["properties"]) == list(RICH["properties"])  # the author's order
    assert compiled.output_type.model_json_schema() == expected


def test_model_sees_draft_07_definitions_as_defs(compiler: SchemaCompiler) -> None:
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"a": {"$ref": "#/definitions/we%20ird~1name"}, "b": {"$ref": "#/definitions/x"}},
        "definitions": {"we ird/name": {"type": "string", "description": "d"}, "x": {"type": "integer"}},
    }
    rendered = llm_schema(compiler.compile(schema))
    assert rendered == {
        "type": "object",
        "properties": {"a": {"$ref": "#/$defs/we_ird_name"}, "b": {"$ref": "#/$defs/x"}},
        "$defs": {"we_ird_name": {"type": "string", "description": "d"}, "x": {"type": "integer"}},
    }


def test_model_sees_no_invented_title_or_description(compiler: SchemaCompiler) -> None:
    rendered = llm_schema(compiler.compile({"type": "object", "properties": {"a": {"type": "string"}}}))
    assert rendered == {"type": "object", "properties": {"a": {"type": "string"}}}


def test_ref_with_siblings_and_at_the_root(compiler: SchemaCompiler) -> None:
    schema = {
        "type": "object",
        "$ref": "#/$defs/base",
        "properties": {"b": {"$ref": "#/$defs/text", "maxLength": 3, "description": "short"}},
        "$defs": {"base": {"required": ["a"]}, "text": {"type": "string"}},
    }
    compiled = compiler.compile(schema)
    rendered = llm_schema(compiled)
    assert rendered["$ref"] == "#/$defs/base"
    assert rendered["properties"]["b"] == {"$ref": "#/$defs/text", "maxLength": 3, "description": "short"}
    assert rendered["$defs"] == {"base": {"required": ["a"]}, "text": {"type": "string"}}
    assert errors_of(compiled, {"b": "long"}) == [(("b",), "maxLength"), (("a",), "missing")]
    assert compiled.validate_python({"a": 1, "b": "ok"}) == {"a": 1, "b": "ok"}


# --- instances: exactly as given, with useful errors -----------------------------------


def test_valid_instance_comes_back_exactly(compiler: SchemaCompiler) -> None:
    compiled = compiler.compile(RICH)
    instance = {
        "name": "Ada",
        "age": 36.0,  # an integer in JSON Schema, and stays a float
        "score": 2,
        "address": {"zip": "12345", "extra": [1, 1.0, True]},  # additional properties allowed there
        "model_config": False,
        "first-name": None,
        "class": None,
        "$ref": "x",
        "properties": {"n": 10**40},
        "role": {"a": [1.0]},  # equal to {"a": [1]}
        "contact": 7,
        "tree": {"children": [{"value": 1, "children": []}]},
    }
    stored = compiled.validate_python(instance)
    assert stored == instance
    assert json.dumps(stored) == json.dumps(instance)  # same types, same key order
    assert type(stored["age"]) is float
    assert "score" in stored and stored["score"] == 2  # and no default injected anywhere else
    assert "email" not in stored
    assert stored is not instance
    assert reference_valid(RICH, stored)
    assert compiled.validate_json(json.dumps(instance)) == instance


def test_defaults_are_not_injected(compiler: SchemaCompiler) -> None:
    compiled = compiler.compile(obj({"a": {"type": "integer", "default": 5}}))
    assert compiled.validate_python({}) == {}
    assert compiled.validate_json("{}") == {}


@pytest.mark.parametrize(
    ("schema", "instance", "expected"),
    [
        (one({"type": "integer"}), {"v": True}, [(("v",), "type")]),
        (one({"type": "integer"}), {"v": "1"}, [(("v",), "type")]),
        (one({"type": "integer"}), {"v": 1.5}, [(("v",), "type")]),
        (one({"type": "number"}), {"v": False}, [(("v",), "type")]),
        (one({"type": "string", "minLength": 2}), {"v": "😀"}, [(("v",), "minLength")]),
        (one({"type": "string", "maxLength": 1}), {"v": "é"}, []),
        (one({"type": "string", "pattern": "^a$"}), {"v": "a\n"}, []),  # Python's $, as the reference
        (one({"type": "string", "pattern": "^a\\Z"}), {"v": "a\n"}, [(("v",), "pattern")]),
        (one({"exclusiveMinimum": 0.5}), {"v": 0.5}, [(("v",), "exclusiveMinimum")]),
        (one({"exclusiveMaximum": 1}), {"v": 0.9999999999999999}, []),
        (one({"multipleOf": 0.1}), {"v": 0.3}, [(("v",), "multipleOf")]),  # reference's float algorithm
        (one({"multipleOf": 0.1}), {"v": 7}, []),
        (one({"enum": [1]}), {"v": 1.0}, []),
        (one({"enum": [1]}), {"v": True}, [(("v",), "enum")]),
        (one({"const": [1, {"a": 0}]}), {"v": [1.0, {"a": -0.0}]}, []),
        (one({"const": False}), {"v": 0}, [(("v",), "const")]),
        (one({"uniqueItems": True}), {"v": [1, 1.0]}, [(("v",), "uniqueItems")]),
        (one({"uniqueItems": True}), {"v": [1, True, "1"]}, []),
        (
            one({"uniqueItems": True}),
            {"v": [{"a": 1, "b": [2]}, {"b": [2.0], "a": 1}]},
            [(("v",), "uniqueItems")],
        ),
        (one({"uniqueItems": True}), {"v": [[1], [True], [1]]}, []),  # the reference's quirk, mirrored
        (one({"format": "date"}), {"v": "2024-02-30"}, [(("v",), "format")]),
        (one({"format": "date-time"}), {"v": "2024-01-01t10:00:00z"}, []),
        (one({"format": "email"}), {"v": 5}, []),  # formats only apply to strings
        (one({"format": "uuid"}), {"v": "00000000000040008000000000000000"}, [(("v",), "format")]),
        (one({"format": "uri"}), {"v": "no scheme"}, [(("v",), "format")]),
        (one(False), {"v": None}, [(("v",), "false_schema")]),
        (one(True), {"v": [{"anything": 1}]}, []),
        (obj({"a": {}}, additionalProperties=False), {"a": 1, "b": 2}, [(("b",), "additionalProperties")]),
        (obj({}, additionalProperties={"type": "string"}), {"x": 1}, [(("x",), "type")]),
        (obj({"a": {"type": "null"}}, required=["a"]), {}, [(("a",), "missing")]),
        (obj({"a": {"type": "null"}}, required=["a"]), {"a": None}, []),
        (one({"items": {"type": "integer"}, "minItems": 1}), {"v": [1, "2", 3.0]}, [(("v", 1), "type")]),
        (one({"oneOf": [{"type": "integer"}, {"type": "number"}]}), {"v": 1}, [(("v",), "oneOf")]),
        (one({"oneOf": [{"type": "integer"}, {"type": "number"}]}), {"v": 1.5}, []),
        (one({"anyOf": [{"type": "string"}, {"type": "null"}]}), {"v": 0}, [(("v",), "anyOf")]),
        (one({"type": ["integer", "null"], "minimum": 1}), {"v": None}, []),
        (one({"properties": {"a": {"type": "string"}}}), {"v": "not an object"}, []),
    ],
)
def test_instance_outcomes(
    compiler: SchemaCompiler, schema: Json, instance: Json, expected: list[Json]
) -> None:
    compiled = compiler.compile(schema)
    assert reference_valid(schema, instance) == (not expected)
    if expected:
        assert errors_of(compiled, instance) == expected
    else:
        assert compiled.validate_python(instance) == instance


def test_refused_where_the_reference_crashes(compiler: SchemaCompiler) -> None:
    """A huge integer against a float multipleOf: jsonschema raises OverflowError; refuse."""
    schema = one({"multipleOf": 0.5})
    with pytest.raises(OverflowError):
        reference_valid(schema, {"v": 10**400})
    assert errors_of(compiler.compile(schema), {"v": 10**400}) == [(("v",), "multipleOf")]
    assert compiler.compile(one({"multipleOf": 0.1})).validate_python({"v": 10**300}) == {"v": 10**300}


def test_errors_locate_and_explain(compiler: SchemaCompiler) -> None:
    compiled = compiler.compile(RICH)
    bad = {"name": "", "age": 200, "address": {"zip": "1234"}, "tags": ["a", "a"], "contact": 1.5, "nope": 1}
    with pytest.raises(ValidationError) as caught:
        compiled.validate_python(bad)
    errors = {tuple(error["loc"]): error for error in caught.value.errors()}
    assert errors[("name",)]["msg"] == "String should have at least 1 characters"
    assert errors[("age",)]["msg"] == "Input should be less than 150"
    assert errors[("address", "zip")]["msg"] == "String should match pattern '^\\d{5}$'"
    assert errors[("tags",)]["type"] == "uniqueItems"
    assert errors[("nope",)]["msg"] == "Extra inputs are not permitted"
    contact = errors[("contact",)]["msg"]
    assert contact.startswith("Input should match exactly one 'oneOf' schema, but matches none")
    assert (
        "0: Input should be of type 'string'" in contact and "1: Input should be of type 'integer'" in contact
    )
    assert caught.value.title == "TaskOutput"


@pytest.mark.parametrize(
    ("data", "location"),
    [
        ({"v": math.nan}, ("v",)),
        ({"v": math.inf}, ("v",)),
        ({"v": "\udc00"}, ("v",)),
        ({"v": (1, 2)}, ("v",)),
        ({"v": {1, 2}}, ("v",)),
        ({"v": {1: "a"}}, ("v",)),
        ({"v": 10**5000}, ("v",)),
        ({"v": b"bytes"}, ("v",)),
        ({"v": [object()]}, ("v", 0)),
    ],
)
def test_non_json_input_is_refused(compiler: SchemaCompiler, data: Json, location: tuple[Json, ...]) -> None:
    compiled = compiler.compile(one(True))
    assert errors_of(compiled, data) == [(location, "json_type")]


@pytest.mark.parametrize(
    "text", ['{"v": NaN}', '{"v": Infinity}', '{"v": 1e400}', '{"v": "\\ud800"}', '{"v": 1', "[]"]
)
def test_non_json_text_is_refused(compiler: SchemaCompiler, text: str) -> None:
    with pytest.raises(ValidationError):
        compiler.compile(one(True)).validate_json(text)


def test_json_path_keeps_numbers_and_keys(compiler: SchemaCompiler) -> None:
    compiled = compiler.compile(one({"type": "array"}))
    assert compiled.validate_json('{"v": [1, 1.0, 1e2, -0, 123456789012345678901234567890], "v": [2]}') == {
        "v": [2]
    }
    stored = compiled.validate_json(
        '{"z": 1, "v": [1, 1.0, 1e2, -0, 123456789012345678901234567890], "a": "😀"}'
    )
    assert (
        json.dumps(stored)
        == '{"z": 1, "v": [1, 1.0, 100.0, 0, 123456789012345678901234567890], "a": "\\ud83d\\ude00"}'
    )


def test_dump_revalidates_output(compiler: SchemaCompiler) -> None:
    compiled = compiler.compile(one({"type": "integer"}))
    output = compiled.output_type.model_validate({"v": 1, "extra": [True]})
    assert isinstance(output, SchemaOutput)
    assert compiled.dump(output) == {"v": 1, "extra": [True]}
    assert output.model_dump() == {"v": 1, "extra": [True]}
    output.root["v"] = "mutated"
    with pytest.raises(ValidationError):
        compiled.dump(output)
    with pytest.raises(TypeError):
        compiled.dump({"v": 1})  # type: ignore[arg-type]  # the wrong type on purpose


# --- identity and cache -----------------------------------------------------------------


def test_canonical_hash_is_sorted_compact_utf8() -> None:
    schema = {"type": "object", "title": "Ünï", "properties": {"b": {}, "a": {"minimum": 1.0}}}
    text = '{"properties":{"a":{"minimum":1.0},"b":{}},"title":"Ünï","type":"object"}'
    assert canonical_hash(schema) == hashlib.sha256(text.encode()).hexdigest()
    reordered = {"properties": {"a": {"minimum": 1.0}, "b": {}}, "type": "object", "title": "Ünï"}
    assert canonical_hash(reordered) == canonical_hash(schema)
    with pytest.raises(SchemaError):
        canonical_hash({"x": math.nan})


def test_compile_caches_by_ordered_hash(compiler: SchemaCompiler) -> None:
    first = compiler.compile({"type": "object", "properties": {"a": {}, "b": {}}})
    assert compiler.compile({"type": "object", "properties": {"a": {}, "b": {}}}) is first
    assert first.schema_hash == canonical_hash(first.schema)
    assert list(first.schema) == ["properties", "type"]  # canonical: sorted keys
    assert first.ordered_hash == ordered_hash({"type": "object", "properties": {"a": {}, "b": {}}})
    text = '{"type":"object","properties":{"a":{},"b":{}}}'
    assert first.ordered_hash == hashlib.sha256(text.encode()).hexdigest()
    assert compiler.lookup(first.ordered_hash) is first
    assert compiler.lookup(first.schema_hash) is None
    assert compiler.lookup("0" * 64) is None


def test_key_order_is_not_identity_but_is_what_the_model_sees(compiler: SchemaCompiler) -> None:
    # Same schema, two orders: one hash, two compilations, each shown in its own property
    # order (pydantic's generator sorts keywords, never properties).
    inner = {"type": "object", "properties": {"y": {}, "x": {"$ref": "#/$defs/d"}}}
    zeta_first = {
        "type": "object",
        "properties": {"zeta": inner, "alpha": {}, "mid": {}},
        "$defs": {"d": {"type": "object", "properties": {"q": {}, "p": {}}}},
    }
    alpha_first = json.loads(json.dumps(zeta_first))
    alpha_first["properties"] = {"alpha": {}, "mid": {}, "zeta": inner}
    alpha_first["$defs"]["d"]["properties"] = {"p": {}, "q": {}}
    a, b = compiler.compile(zeta_first), compiler.compile(alpha_first)
    assert a.schema_hash == b.schema_hash and a.schema == b.schema
    assert a.ordered_hash != b.ordered_hash and a is not b
    assert list(llm_schema(a)["properties"]) == ["zeta", "alpha", "mid"]
    assert list(llm_schema(a)["properties"]["zeta"]["properties"]) == ["y", "x"]
    assert list(llm_schema(a)["$defs"]["d"]["properties"]) == ["q", "p"]
    assert list(llm_schema(b)["properties"]) == ["alpha", "mid", "zeta"]
    assert list(llm_schema(b)["$defs"]["d"]["properties"]) == ["p", "q"]
    assert compiler.lookup(ordered_hash(zeta_first)) is a
    assert compiler.lookup(ordered_hash(alpha_first)) is b
    with pytest.raises(SchemaError):
        ordered_hash({"x": math.inf})


def test_schema_copy_is_private(compiler: SchemaCompiler) -> None:
    schema = one({"type": "string"})
    compiled = compiler.compile(schema)
    schema["properties"]["v"]["type"] = "integer"
    canonical: Json = compiled.schema
    canonical["properties"]["v"]["type"] = "integer"
    assert compiled.validate_python({"v": "still a string"}) == {"v": "still a string"}


def test_cache_is_lru_bounded() -> None:
    compiler = SchemaCompiler(cache_size=2)
    a, b = (compiler.compile(one({"const": n})) for n in (1, 2))
    compiler.lookup(a.ordered_hash)  # a is now the most recent
    c = compiler.compile(one({"const": 3}))
    assert compiler.lookup(b.ordered_hash) is None
    assert compiler.lookup(a.ordered_hash) is a
    assert compiler.lookup(c.ordered_hash) is c
    with pytest.raises(ValueError, match="cache_size"):
        SchemaCompiler(cache_size=0)


def test_check_does_not_cache(compiler: SchemaCompiler) -> None:
    schema_hash = compiler.check(RICH)
    assert schema_hash == canonical_hash(RICH)
    assert compiler.lookup(ordered_hash(RICH)) is None


def test_lookup_costs_microseconds(compiler: SchemaCompiler) -> None:
    key = compiler.compile(RICH).ordered_hash
    calls = 20_000
    started = time.perf_counter()
    for _ in range(calls):
        compiler.lookup(key)
    per_call = (time.perf_counter() - started) / calls
    assert per_call < 20e-6, f"{per_call * 1e6:.1f} µs per lookup"  # target 5 µs; CI slack


def test_concurrent_compiles_share_one_result() -> None:
    compiler = SchemaCompiler()
    results: list[CompiledSchema] = []
    barrier = threading.Barrier(8)

    def work() -> None:
        barrier.wait()
        results.append(compiler.compile(RICH))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(result) for result in results}) == 1


# --- example instances ------------------------------------------------------------------

EXAMPLES: list[tuple[str, Json]] = [
    ("rich", RICH),
    ("enum-const", obj({"a": {"enum": [3, "x"]}, "b": {"const": {"k": [1]}}}, required=["a", "b"])),
    ("lengths", one({"type": "string", "minLength": 5, "maxLength": 5})),
    ("exclusive-floats", one({"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.001})),
    ("integer-bounds", one({"type": "integer", "minimum": 10.5, "exclusiveMaximum": 12})),
    ("negative-multiple", one({"type": "integer", "maximum": -7, "multipleOf": 5})),
    ("float-multiple", one({"type": "number", "minimum": 1, "multipleOf": 0.1})),
    ("integer-float-multiple", one({"type": "integer", "minimum": 1, "multipleOf": 0.7})),
    (
        "formats",
        obj(
            {f: {"type": "string", "format": f} for f in ("date-time", "date", "email", "uri", "uuid")},
            required=["date-time", "date", "email", "uri", "uuid"],
        ),
    ),
    (
        "long-formats",
        obj(
            {
                "e": {"format": "email", "minLength": 40},
                "u": {"format": "uri", "minLength": 40},
                "d": {"format": "date-time", "minLength": 30},
            },
            required=["e", "u", "d"],
        ),
    ),
    (
        "short-formats",
        obj(
            {"e": {"format": "email", "maxLength": 3}, "u": {"format": "uri", "maxLength": 2}},
            required=["e", "u"],
        ),
    ),
    (
        "unique-items",
        one(
            {"type": "array", "items": {"type": "integer", "minimum": 5}, "minItems": 4, "uniqueItems": True}
        ),
    ),
    (
        "unique-objects",
        one(
            {
                "type": "array",
                "items": obj({"a": {"type": "boolean"}, "b": {"enum": [1, 2]}}),
                "minItems": 3,
                "uniqueItems": True,
            }
        ),
    ),
    ("one-of", one({"oneOf": [{"type": "number"}, {"type": "integer"}]})),
    ("one-of-overlap", one({"oneOf": [{"type": "string"}, {"type": "string", "maxLength": 0}]})),
    ("nullable", one({"type": ["null", "string"], "minLength": 2})),
    ("pattern", one({"type": "string", "pattern": "^[A-Z]{2}-\\d{3}$"})),
    ("pattern-min-length", one({"type": "string", "pattern": "^[a-z]+$", "minLength": 30})),
    ("pattern-unanchored", one({"type": "string", "pattern": "x\\d", "minLength": 8})),
    (
        "linked-list",
        one(
            {"$ref": "#/$defs/node"},
            **{
                "$defs": {
                    "node": obj(
                        {
                            "value": {"type": "integer"},
                            "next": {"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]},
                        },
                        required=["value", "next"],
                    )
                }
            },
        ),
    ),
    (
        "tree",
        one(
            {"$ref": "#/$defs/node"},
            **{
                "$defs": {
                    "node": obj(
                        {
                            "value": {"type": "integer"},
                            "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                        },
                        required=["value", "children"],
                    )
                }
            },
        ),
    ),
    ("required-extra", {"type": "object", "required": ["free"], "additionalProperties": {"type": "integer"}}),
    ("bool-schemas", obj({"a": True, "b": False}, required=["a"])),
    ("ref-bomb", _ref_bomb(40)),
]


@pytest.mark.parametrize("schema", [case[1] for case in EXAMPLES], ids=[case[0] for case in EXAMPLES])
def test_example_instance_is_valid(compiler: SchemaCompiler, schema: Json) -> None:
    compiled = compiler.compile(schema)
    example = example_instance(compiled)
    assert reference_valid(schema, example), example
    assert example_instance(schema) == example  # deterministic, from a schema too


@pytest.mark.parametrize(
    ("schema", "pointer"),
    [
        ({"type": "object", "required": ["x"], "additionalProperties": False}, "/additionalProperties"),
        (one({"type": "string", "minLength": 3, "maxLength": 2}), "/properties/v"),
        (one({"type": "integer", "exclusiveMinimum": 1, "exclusiveMaximum": 2}), "/properties/v"),
        (one({"enum": [1, 2], "type": "string"}), "/properties/v"),
        (one({"type": "array", "items": {"enum": [1]}, "minItems": 2, "uniqueItems": True}), "/properties/v"),
        (one({"oneOf": [{"type": "string"}, {"type": "string"}]}), "/properties/v"),
        (one({"type": "string", "pattern": "^\\d+$", "format": "email"}), "/properties/v"),
        (
            one({"$ref": "#/$defs/n"}, **{"$defs": {"n": obj({"n": {"$ref": "#/$defs/n"}}, required=["n"])}}),
            "/$defs/n",
        ),
    ],
)
def test_example_instance_reports_what_it_cannot_satisfy(schema: Json, pointer: str) -> None:
    with pytest.raises(SchemaError) as caught:
        example_instance(schema)
    assert caught.value.pointer == pointer
    assert "no example instance" in caught.value.message
