"""Checks a schema before anything is built from it: one iterative walk.

The walk enforces, in document order and stopping at the first problem:

* the JSON domain (objects with string keys, arrays, strings without unpaired
  surrogates, finite numbers, integers Python can print);
* the budget (depth, subschema count, sizes), so that hostile input costs at most the
  budget, never its own size or depth (there is no Python recursion on the input);
* the supported keyword subset (anything else is rejected, naming the keyword);
* the meta-schema's constraints on every supported keyword (types, non-negative
  integers, non-empty `anyOf`, unique `required`, ...). Running jsonschema's own
  meta-schema validation instead would cost ~40 ms for a 50-property schema and recurse
  on the input; the equivalence of the two is property-tested;
* `$ref` (local JSON pointers into the root `$defs`/`definitions` only; nothing is ever
  fetched), `format` names, and `pattern` syntax (see `_schema_regex`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, cast
from urllib.parse import unquote, urlsplit

from jsonschema import Draft7Validator, Draft202012Validator, FormatChecker

from libs.common.jsonvalue import JsonObject, JsonValue
from services.agent_svc._schema_regex import CompiledPattern, PatternRejected, compile_pattern
from services.agent_svc._schema_types import Draft, SchemaBudget, SchemaError, join_pointer

__all__ = [
    "ANNOTATIONS",
    "CheckedSchema",
    "RefTarget",
    "canonical_json",
    "check_schema",
    "format_checker",
    "json_domain_error",
]

_DRAFT_URIS: Final[dict[str, Draft]] = {
    "https://json-schema.org/draft/2020-12/schema": "2020-12",
    "http://json-schema.org/draft-07/schema": "draft-07",
}


_FORMAT_CHECKERS: Final[dict[Draft, FormatChecker]] = {
    "2020-12": Draft202012Validator.FORMAT_CHECKER,
    "draft-07": Draft7Validator.FORMAT_CHECKER,
}
# `uuid` is not a draft-07 format: the draft-07 reference validator does not check it,
# so accepting it there would silently assert nothing.
_FORMATS: Final[dict[Draft, frozenset[str]]] = {
    "2020-12": frozenset({"date-time", "date", "email", "uri", "uuid"}),
    "draft-07": frozenset({"date-time", "date", "email", "uri"}),
}
_SIMPLE_TYPES: Final = frozenset({"array", "boolean", "integer", "null", "number", "object", "string"})

ANNOTATIONS: Final = frozenset(
    {"title", "description", "default", "examples", "$comment", "deprecated", "readOnly", "writeOnly"}
)
"""Keywords that never affect validation."""

_ASSERTIONS: Final = frozenset(
    {
        "type", "enum", "const",
        "properties", "required", "additionalProperties",
        "minLength", "maxLength", "pattern", "format",
        "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
        "items", "minItems", "maxItems", "uniqueItems",
        "anyOf", "oneOf", "$ref",
    }
)  # fmt: skip
_ROOT_ONLY: Final = frozenset({"$schema", "$id", "$defs", "definitions"})
_KNOWN_UNSUPPORTED: Final[dict[str, str]] = {
    "not": "'not' is not supported",
    "allOf": "'allOf' is not supported; merge the subschemas",
    "if": "'if'/'then'/'else' are not supported",
    "then": "'if'/'then'/'else' are not supported",
    "else": "'if'/'then'/'else' are not supported",
    "patternProperties": "'patternProperties' is not supported",
    "propertyNames": "'propertyNames' is not supported",
    "dependentRequired": "'dependentRequired' is not supported",
    "dependentSchemas": "'dependentSchemas' is not supported",
    "dependencies": "'dependencies' is not supported",
    "prefixItems": "'prefixItems' (tuples) is not supported",
    "additionalItems": "'additionalItems' (tuples) is not supported",
    "contains": "'contains' is not supported",
    "minContains": "'minContains' is not supported",
    "maxContains": "'maxContains' is not supported",
    "minProperties": "'minProperties' is not supported",
    "maxProperties": "'maxProperties' is not supported",
    "unevaluatedProperties": "'unevaluatedProperties' is not supported",
    "unevaluatedItems": "'unevaluatedItems' is not supported",
    "$dynamicRef": "'$dynamicRef' is not supported",
    "$dynamicAnchor": "'$dynamicAnchor' is not supported",
    "$recursiveRef": "'$recursiveRef' is not supported",
    "$recursiveAnchor": "'$recursiveAnchor' is not supported",
    "$anchor": "'$anchor' is not supported; use '$defs' and '#/$defs/<name>'",
    "$vocabulary": "'$vocabulary' is not supported",
    "contentEncoding": "'contentEncoding' is not supported",
    "contentMediaType": "'contentMediaType' is not supported",
    "contentSchema": "'contentSchema' is not supported",
}
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_MAX_INT: Final = 10**4300  # Python refuses to print longer integers (int_max_str_digits).
_ID_PATTERN: Final = re.compile(r"[^#]*#?")


@dataclass(frozen=True, slots=True)
class RefTarget:
    """A `$ref` found by the walk."""

    pointer: str
    """Where the `$ref` keyword is."""
    container: Literal["$defs", "definitions"]
    name: str


@dataclass(slots=True)
class CheckedSchema:
    """What the walk learnt about an accepted schema."""

    draft: Draft
    document: JsonObject
    """A plain-JSON copy of the schema (the input is never used again)."""
    canonical: str
    schema_hash: str
    patterns: dict[str, CompiledPattern] = field(default_factory=dict)
    """Compiled `pattern`s by the pointer of the schema that has them."""
    refs: list[RefTarget] = field(default_factory=list)


def format_checker(draft: Draft) -> FormatChecker:
    """The reference validator's format checker for a draft."""
    return _FORMAT_CHECKERS[draft]


def canonical_json(document: JsonValue) -> str:
    """Sorted keys, compact separators, UTF-8 text: the identity of a schema."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def json_domain_error(value: object) -> str | None:
    """Why a scalar is not a JSON value this service stores, or None if it is one.

    Exact types only (what `json.loads` produces): a `str` or `int` subclass may carry
    behaviour that changes what is compared or stored.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str) and type(value) is str:
        return "strings must not contain unpaired surrogates" if _SURROGATE.search(value) else None
    if isinstance(value, int) and type(value) is int:
        return None if -_MAX_INT < value < _MAX_INT else "integers must have at most 4300 digits"
    if isinstance(value, float) and type(value) is float:
        return None if value - value == 0.0 else "numbers must be finite (no NaN or Infinity)"
    return f"{type(value).__name__} is not a JSON value"


_SCHEMA: Final = 0
"""A value that must be a schema."""
_SUBSCHEMAS: Final = 1
"""The object under `properties`/`$defs`/`definitions`: every value is a schema."""
_SUBSCHEMA_LIST: Final = 2
"""The array under `anyOf`/`oneOf`: every item is a schema."""
_DATA: Final = 3
"""Any JSON value (keyword arguments such as `enum` members or `required` names)."""

_Path = tuple["_Path", str | int] | None
"""Where a value is: (parent path, key). Pointers are only spelled out when needed."""
_Child = tuple[str | int, object, int, int]
"""(key in the parent, value, kind, depth)."""


def _pointer(path: _Path) -> str:
    tokens: list[str | int] = []
    while path is not None:
        path, token = path
        tokens.append(token)
    return join_pointer("", *reversed(tokens))


class _Refused(Exception):
    """A keyword's argument is wrong; the caller knows where it is."""


class _Walk:
    def __init__(self, budget: SchemaBudget, draft: Draft) -> None:
        self.budget = budget
        self.draft = draft
        self.size = 0
        self.nodes = 0
        self.ref_count = 0
        self.pattern_cost = 0
        self.checked = CheckedSchema(draft=draft, document={}, canonical="", schema_hash="")
        self.allowed = _ASSERTIONS | ANNOTATIONS
        self.uri_reference = format_checker(draft)

    def grow(self, path: _Path, amount: int) -> None:
        self.size += amount
        if self.size > self.budget.max_schema_bytes:
            raise SchemaError(_pointer(path), f"schema is larger than {self.budget.max_schema_bytes} bytes")

    def run(self, root: Mapping[str, object]) -> JsonObject:
        document: JsonObject = dict.fromkeys(root)
        stack: list[tuple[object, _Path, int, int, dict[str, JsonValue] | list[JsonValue]]] = [
            (root, None, _SCHEMA, 1, document)
        ]
        while stack:
            value, path, kind, depth, copy = stack.pop()
            children: list[_Child]
            if type(value) is dict or isinstance(value, Mapping):
                if kind == _SCHEMA:
                    children = self.visit_schema(value, path, depth)
                else:
                    self.check_keys(value, path)
                    if kind == _SUBSCHEMAS:
                        children = [(name, sub, _SCHEMA, depth + 1) for name, sub in value.items()]
                    else:
                        children = self.visit_data_object(value, path, depth)
            else:
                assert isinstance(value, list)  # only containers are pushed
                children = [
                    (index, item, _SCHEMA if kind == _SUBSCHEMA_LIST else _DATA, depth + 1)
                    for index, item in enumerate(value)
                ]
            pending: list[tuple[object, _Path, int, int, dict[str, JsonValue] | list[JsonValue]]] = []
            for key, child, child_kind, child_depth in children:
                child_copy: JsonValue
                if type(child) is str and child_kind == _DATA:
                    # The common case, inline: most of a schema is short strings.
                    text: str = child
                    self.size += len(text) + 2
                    if self.size > self.budget.max_schema_bytes:  # before scanning a huge string
                        self.grow((path, key), 0)
                    if _SURROGATE.search(text):
                        message = "strings must not contain unpaired surrogates"
                        raise SchemaError(_pointer((path, key)), message)
                    child_copy = text
                else:
                    child_copy = self.enter(child, (path, key), child_kind, child_depth)
                if isinstance(copy, dict):
                    copy[str(key)] = child_copy
                else:
                    copy[int(key)] = child_copy
                if isinstance(child_copy, dict | list):
                    pending.append((child, (path, key), child_kind, child_depth, child_copy))
            if self.size > self.budget.max_schema_bytes:
                self.grow(path, 0)
            # Reversed, so that the walk (a stack) goes through containers in document order.
            stack.extend(reversed(pending))
        return document

    def enter(self, value: object, path: _Path, kind: int, depth: int) -> JsonValue:
        """Check a scalar completely, a container's shape; return its copy (empty for containers)."""
        kind_of = type(value)
        if kind_of is str or kind_of is int or kind_of is bool:
            if kind == _SCHEMA and kind_of is not bool:
                raise SchemaError(_pointer(path), "a schema must be an object or a boolean")
            self.grow(path, len(value) + 2 if isinstance(value, str) else 8)
            if (problem := json_domain_error(value)) is not None:
                raise SchemaError(_pointer(path), problem)
            return value  # type: ignore[return-value]  # a JSON scalar: checked just above
        if kind_of is dict or isinstance(value, Mapping):
            return dict.fromkeys(cast(Mapping[str, object], value))
        if isinstance(value, list):
            if kind == _SCHEMA:
                raise SchemaError(_pointer(path), "a schema must be an object or a boolean")
            if kind == _DATA and depth > self.budget.max_depth:
                message = f"value is nested deeper than {self.budget.max_depth} levels"
                raise SchemaError(_pointer(path), message)
            self.grow(path, 1 + 2 * len(value))  # every item costs at least 2 bytes ('0,')
            return [None] * len(value)
        if kind == _SCHEMA and type(value) is not bool:
            raise SchemaError(_pointer(path), "a schema must be an object or a boolean")
        if (problem := json_domain_error(value)) is not None:
            raise SchemaError(_pointer(path), problem)
        self.grow(path, len(value) + 2 if isinstance(value, str) else 8)
        return value  # type: ignore[return-value]  # json_domain_error accepted it: a JSON scalar

    def check_keys(self, value: Mapping[object, object], path: _Path) -> None:
        # Every member costs at least 4 bytes ('"":0'); counting first rejects a huge
        # object before looking at its keys.
        self.grow(path, 2 + 4 * len(value))
        for key in value:
            if type(key) is not str:
                raise SchemaError(_pointer(path), "object keys must be strings")
            if _SURROGATE.search(key):
                raise SchemaError(_pointer(path), "object keys must not contain unpaired surrogates")

    def visit_data_object(self, value: Mapping[object, object], path: _Path, depth: int) -> list[_Child]:
        if depth > self.budget.max_depth:
            raise SchemaError(_pointer(path), f"value is nested deeper than {self.budget.max_depth} levels")
        if isinstance(value.get("$ref"), str):
            # pydantic's JSON Schema generator would take it for a reference and fail.
            raise SchemaError(_pointer((path, "$ref")), "literal objects with a '$ref' key are not supported")
        return [(key, child, _DATA, depth + 1) for key, child in value.items()]  # type: ignore[misc]  # keys are str (check_keys)

    def visit_schema(self, schema: Mapping[object, object], path: _Path, depth: int) -> list[_Child]:
        budget = self.budget
        self.grow(path, 2 + 4 * len(schema))
        if depth > budget.max_depth:
            raise SchemaError(_pointer(path), f"schema is nested deeper than {budget.max_depth} levels")
        self.nodes += 1
        if self.nodes > budget.max_nodes:
            raise SchemaError(_pointer(path), f"schema has more than {budget.max_nodes} subschemas")
        is_root = path is None
        for key in schema:
            if key in self.allowed or (is_root and key in _ROOT_ONLY):
                continue
            if type(key) is not str:
                raise SchemaError(_pointer(path), "object keys must be strings")
            where = _pointer((path, key))
            if key in _ROOT_ONLY:
                raise SchemaError(where, f"'{key}' is only allowed at the root")
            if key in _KNOWN_UNSUPPORTED:
                raise SchemaError(where, _KNOWN_UNSUPPORTED[key])
            raise SchemaError(where, f"unknown keyword '{key}'")
        keywords = cast(Mapping[str, object], schema)
        if self.draft == "draft-07" and "$ref" in keywords:
            for key in keywords:
                if key != "$ref" and key not in ANNOTATIONS:
                    raise SchemaError(
                        _pointer((path, key)),
                        f"in draft-07 '{key}' beside '$ref' is ignored by validators; "
                        "move it into the referenced definition",
                    )
        children: list[_Child] = []
        for key, value in keywords.items():
            try:
                self.check_keyword(key, value, path)
            except _Refused as refused:
                raise SchemaError(_pointer((path, key)), str(refused)) from None
            if key in ("properties", "$defs", "definitions"):
                children.append((key, value, _SUBSCHEMAS, depth))
            elif key in ("additionalProperties", "items"):
                children.append((key, value, _SCHEMA, depth + 1))
            elif key in ("anyOf", "oneOf"):
                children.append((key, value, _SUBSCHEMA_LIST, depth))
            else:
                children.append((key, value, _DATA, 1))
        return children

    def check_keyword(self, key: str, value: object, path: _Path) -> None:
        budget = self.budget
        if key == "type":
            names = [value] if isinstance(value, str) else value
            if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
                raise _Refused("'type' must be a type name or a non-empty array of type names")
            for name in names:
                if name not in _SIMPLE_TYPES:
                    raise _Refused(f"'type' has an unknown type name {name!r}")
            if len(set(names)) != len(names):
                raise _Refused("'type' array must not repeat a type")
        elif key == "enum":
            if not isinstance(value, list):
                raise _Refused("'enum' must be an array")
            if len(value) > budget.max_enum_values:
                raise _Refused(f"'enum' has more than {budget.max_enum_values} values")
        elif key == "examples":
            if not isinstance(value, list):
                raise _Refused("'examples' must be an array")
        elif key in ("properties", "$defs", "definitions"):
            if not isinstance(value, Mapping):
                raise _Refused(f"'{key}' must be an object")
            if key == "properties" and len(value) > budget.max_properties:
                raise _Refused(f"'properties' has more than {budget.max_properties} entries")
        elif key == "required":
            if not isinstance(value, list) or not all(type(n) is str for n in value):
                raise _Refused("'required' must be an array of strings")
            if len(value) > budget.max_properties:
                raise _Refused(f"'required' has more than {budget.max_properties} names")
            if len(set(value)) != len(value):
                raise _Refused("'required' must not repeat a name")
        elif key in ("minLength", "maxLength", "minItems", "maxItems"):
            if not _is_non_negative_integer(value):
                raise _Refused(f"'{key}' must be a non-negative integer")
        elif key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if type(value) not in (int, float):
                raise _Refused(f"'{key}' must be a number")
        elif key == "multipleOf":
            if type(value) not in (int, float) or not value > 0:  # type: ignore[operator]  # int or float here
                raise _Refused("'multipleOf' must be a number greater than 0")
        elif key == "uniqueItems" or key in ("deprecated", "readOnly", "writeOnly"):
            if type(value) is not bool:
                raise _Refused(f"'{key}' must be a boolean")
        elif key in ("title", "description", "$comment", "format", "pattern", "$schema", "$id", "$ref"):
            if type(value) is not str:
                raise _Refused(f"'{key}' must be a string")
            self.check_string_keyword(key, value, path)
        elif key == "items" and isinstance(value, list):
            raise _Refused("'items' as an array (tuple validation) is not supported")
        elif key in ("anyOf", "oneOf") and (not isinstance(value, list) or not value):
            raise _Refused(f"'{key}' must be a non-empty array of schemas")

    def check_string_keyword(self, key: str, value: str, path: _Path) -> None:
        if key == "format":
            if value not in _FORMATS[self.draft]:
                supported = ", ".join(sorted(_FORMATS[self.draft]))
                message = f"unsupported format {value!r} (supported in {self.draft}: {supported})"
                raise _Refused(message)
        elif key == "pattern":
            limit = self.budget.max_pattern_length
            if len(value) > limit:
                raise _Refused(f"'pattern' is longer than {limit} characters")
            try:
                compiled = compile_pattern(value, self.budget.max_pattern_cost)
            except PatternRejected as error:
                raise _Refused(f"'pattern' {error}") from None
            self.pattern_cost += compiled.cost
            if self.pattern_cost > self.budget.max_total_pattern_cost:
                raise _Refused("the schema's patterns are too complex in total")
            self.checked.patterns[_pointer(path)] = compiled
        elif key == "$id":
            if not _ID_PATTERN.fullmatch(value) or not self.uri_reference.conforms(value, "uri-reference"):
                raise _Refused("'$id' must be a URI reference without a fragment")
        elif key == "$ref":
            self.ref_count += 1
            if self.ref_count > self.budget.max_refs:
                raise _Refused(f"schema has more than {self.budget.max_refs} '$ref's")
            self.checked.refs.append(_parse_ref(value, _pointer((path, key)), self.uri_reference))
        elif key in ("title", "description", "$comment") or key == "$schema":
            return


def _is_non_negative_integer(value: object) -> bool:
    # The meta-schema says {"type": "integer", "minimum": 0}; 2.0 is an integer in JSON Schema.
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 0
    return isinstance(value, float) and value.is_integer() and value >= 0


def _parse_ref(ref: str, where: str, checker: FormatChecker) -> RefTarget:
    """Parse a `$ref` (refusals raise `_Refused`; `where` is kept for the existence check)."""
    if not checker.conforms(ref, "uri-reference"):
        raise _Refused("'$ref' must be a URI reference (percent-encode spaces and the like)")
    if not ref.startswith("#"):
        scheme = urlsplit(ref).scheme.lower()
        if scheme in ("http", "https", "file"):
            raise _Refused(f"remote '$ref' ({scheme}:) is not allowed; nothing is ever fetched")
        raise _Refused("only local '$ref's ('#/$defs/<name>') are supported")
    if ref == "#":
        raise _Refused("'$ref' to the root is not supported; move the recursive part into '$defs'")
    if not ref.startswith("#/"):
        raise _Refused("anchor '$ref's are not supported; use '#/$defs/<name>'")
    # Mirror referencing's pointer resolution: percent-decode, split, then unescape ~1 and ~0.
    segments = unquote(ref[2:]).split("/")
    if len(segments) != 2 or segments[0] not in ("$defs", "definitions"):
        raise _Refused("'$ref' must point at an entry of the root '$defs' (or 'definitions')")
    name = segments[1].replace("~1", "/").replace("~0", "~")
    return RefTarget(pointer=where, container=segments[0], name=name)  # type: ignore[arg-type]  # checked above


def _detect_draft(schema: Mapping[str, object]) -> Draft:
    if "$schema" not in schema:
        return "2020-12"
    uri = schema["$schema"]
    if type(uri) is not str:
        raise SchemaError("/$schema", "'$schema' must be a string")
    # jsonschema looks dialects up with the same normalization (an empty fragment drops).
    draft = _DRAFT_URIS.get(urlsplit(uri).geturl())
    if draft is None:
        raise SchemaError("/$schema", "unsupported '$schema': use draft 2020-12 (the default) or draft-07")
    return draft


def check_schema(schema: object, budget: SchemaBudget) -> CheckedSchema:
    """Run every check; return the plain copy, its canonical form and what was found."""
    if not isinstance(schema, Mapping):
        raise SchemaError("", "the schema must be a JSON object")
    root_type = schema.get("type")
    if root_type not in ("object", ["object"]):
        raise SchemaError(
            "/type" if "type" in schema else "",
            'the root schema must have "type": "object" (LLM tool APIs take an object)',
        )
    draft = _detect_draft(schema)
    walk = _Walk(budget, draft)
    document = walk.run(schema)
    checked = walk.checked
    checked.document = document
    checked.canonical = canonical_json(document)
    encoded = checked.canonical.encode()
    if len(encoded) > budget.max_schema_bytes:
        raise SchemaError("", f"schema is larger than {budget.max_schema_bytes} bytes")
    checked.schema_hash = hashlib.sha256(encoded).hexdigest()
    for ref in checked.refs:
        container = document.get(ref.container)
        if not isinstance(container, dict) or ref.name not in container:
            raise SchemaError(ref.pointer, f"'$ref' target '#/{ref.container}/{ref.name}' does not exist")
    return checked
