r"""Schema compiler: a task's JSON Schema to the output type of a pydantic-ai agent.

A task carries a `response_schema`; a run hands `compile(schema).output_type` to
pydantic-ai as `output_type`, and the answer it returns is guaranteed to validate
against the schema. `docs/schema-compiler.md` is the user-facing description.

The rule
--------
For every JSON instance, the compiled type accepts it exactly when a JSON Schema
validator accepts it: the reference is `jsonschema.validators.validator_for(schema)`
(Draft202012Validator, or Draft7Validator for draft-07 schemas) with the draft's
`FORMAT_CHECKER` (format assertion on) and an empty `referencing.Registry()` (nothing is
retrieved). `tests/unit/test_schema_compiler_property.py` checks the rule on thousands
of generated schemas and near-valid instances, through both `validate_python` and
`validate_json`, and checks that what would be stored equals the input.

Design
------
* Checks first (`_schema_check`): one iterative walk enforces the JSON domain, the
  `SchemaBudget`, the supported keyword subset and the meta-schema's constraints,
  stopping at the first problem with a JSON pointer. A 10,000-deep schema is refused
  at depth 33, a 100,000-value enum before its values are looked at. Nothing is
  fetched: `$ref` must be a local pointer into the root `$defs`/`definitions`.
* Acceptance (`_schema_validate`): the output type is a pydantic `RootModel` whose only
  validator is an exact implementation of the supported keywords with jsonschema's
  semantics. There are no typed pydantic fields underneath, so pydantic's lax
  coercion, bool-as-int, float/int strictness, default injection, alias and
  identifier rules for property names (`model_config`, `class`, `first-name`) and
  extra-property handling simply do not apply: the validated value is a private copy
  of the input, exactly as given. `$ref`s are shared nodes (never expanded) with
  memoized results, so a `$ref` bomb compiles and validates in linear time.
* What the model sees (`_schema_render`): the output type's JSON Schema is the task's
  own schema, keyword for keyword (minus `$schema`, `$id`, `$comment`), with
  definitions moved into pydantic's `$defs` so recursion survives pydantic's JSON
  Schema generator. Faithfulness is tested by comparing the two.
* `pattern` (`_schema_regex`): a subset of Python's regex syntax, translated into an
  equivalent expression for the linear-time Rust engine inside pydantic-core, so a
  hostile answer cannot trigger catastrophic backtracking.

Supported keywords
------------------
`type` (a name or an array of names), `enum`, `const` (any JSON), `properties`,
`required`, `additionalProperties` (boolean or schema), `minLength`, `maxLength`,
`pattern`, `format` (`date-time`, `date`, `email`, `uri`, and `uuid` in 2020-12 only),
`minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`, `multipleOf`, `items`
(one schema), `minItems`, `maxItems`, `uniqueItems`, `anyOf`, `oneOf`, `$ref`, and at
the root `$defs`, `definitions`, `$schema` (2020-12, the default, or draft-07) and `$id`
(no fragment); annotations `title`, `description`, `default` (never injected),
`examples`, `$comment`, `deprecated`, `readOnly`, `writeOnly`. The root must be
`"type": "object"`: LLM tool-calling APIs take an object as the tool's arguments.
Anything else is refused with a pointer to the keyword.

Known divergences
-----------------
Every divergence found between a pydantic model and the reference, and how it is
closed. None is open within the supported subset and the JSON domain.

1. *Lax coercion* (`"1"` to 1), *bool as int*, *1.0 refused for int fields*, *extras
   dropped or refused*, *defaults injected into the output*, *property names that
   are not identifiers or collide with BaseModel attributes*, *null vs missing*:
   closed by design, no typed fields (see Design).
2. *Unicode length*: lengths are `len(str)`, code points, as in the reference (a
   surrogate pair in JSON text is one code point after parsing in both paths).
3. *multipleOf with floats*: the reference divides and compares with `int()`, so 0.3
   is not a multiple of 0.1 while 3 is not a multiple of 0.1 either; the same
   algorithm (with its `Fraction` fallback on overflow) is used. Where the reference
   itself raises `OverflowError` (an integer beyond float range against a float
   `multipleOf`, or a float against a huge integer), the instance is refused.
4. *uniqueItems equality*: 1 and 1.0 are equal, 1 and true are not, arrays and objects
   compare deeply; the reference's sort-then-compare-neighbours path has a quirk
   (`[[1], [true], [1]]` counts as unique) that is mirrored rather than fixed, because
   the rule is to accept what the reference accepts.
5. *pattern*: Python and Rust regex engines disagree on `\d`, `\w`, `\s`, `$`, `.`,
   classes and escapes; closed by translating from Python semantics and refusing the
   rest (see `_schema_regex`). Lookaround and backreferences are refused.
6. *format*: `uuid` is not asserted by the draft-07 reference, so it is refused in
   draft-07 schemas (an unknown format), instead of being silently ignored; the format
   functions are the reference's own.
7. *draft-07 `$ref` siblings*: the draft-07 reference ignores every keyword beside
   `$ref`; such keywords (other than annotations) are refused instead of ignored.
8. *pydantic's JSON parser*: `validate_json` parses with pydantic-core (as pydantic-ai
   does); it refuses lone-surrogate escapes and nesting beyond 200 levels that
   `json.loads` would accept, and accepts `NaN`/`Infinity`. Closed by the JSON domain
   below: both paths refuse the same things.
9. *JSON domain*: instances must be JSON as RFC 8259 / I-JSON means it: exact `dict`
   (string keys), `list`, `str` (no unpaired surrogates), finite `float`, `int` of at
   most 4300 digits (Python's printing limit), `bool`, `None`, nested at most
   `SchemaBudget.max_instance_depth` levels. Anything else is refused with a location,
   even where the reference would accept it (it has no notion of "JSON value").
10. *recursion*: the reference recurses and can hit `RecursionError` on deep instances;
    the compiled validator refuses such instances with a clear error instead.
11. *pydantic's JSON Schema generator*: it cannot take `$defs` from a hook (recursive
    schemas would fail, pydantic#12145) and reads any `{"$ref": "..."}` object as a
    reference; closed by rendering definitions as pydantic definitions, and by refusing
    literal objects with a `"$ref"` key inside `enum`/`const`/`default`/`examples`.

Identity and order
------------------
A schema's identity is its canonical JSON (sorted keys, compact, UTF-8): `schema_hash`
and `CompiledSchema.schema` use it, so key order never changes what a schema means.
What the model sees keeps the author's key order (property order steers what a model
writes first: "reasoning" before "answer"), so the cache is keyed by `ordered_hash`,
the hash of the schema's JSON in its own order: two schemas that differ only in key
order are two entries, each rendered in its own order.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, cast

from libs.common.jsonvalue import JsonObject, JsonValue
from services.agent_svc._schema_check import CheckedSchema, canonical_json, check_schema
from services.agent_svc._schema_example import build_example
from services.agent_svc._schema_render import SchemaOutput, make_output_type
from services.agent_svc._schema_types import Draft, SchemaBudget, SchemaError
from services.agent_svc._schema_validate import InstanceValidator, Node, build_graph, copy_instance

__all__ = [
    "CompiledSchema",
    "SchemaBudget",
    "SchemaCompiler",
    "SchemaError",
    "SchemaOutput",
    "canonical_hash",
    "example_instance",
    "ordered_hash",
]

_OUTPUT_TYPE_NAME: Final = "TaskOutput"
_CANONICAL_MAX_DEPTH: Final = 256


@dataclass(frozen=True, slots=True, eq=False)
class CompiledSchema:
    """A checked and compiled schema: the output type and the exact validator.

    Immutable and shared between concurrent runs (the compiler caches it).
    """

    schema_hash: str
    """sha256 (hex) of the canonical JSON: sorted keys, compact separators, UTF-8."""
    ordered_hash: str
    """sha256 (hex) of the JSON in the schema's own key order (compact, UTF-8): the cache key."""
    schema: JsonObject
    """The canonical schema (a private copy; mutating it changes nothing compiled)."""
    draft: Draft
    """The dialect the schema was read as."""
    output_type: type[SchemaOutput]
    """The pydantic model to pass to pydantic-ai as `output_type`."""
    _validator: InstanceValidator = field(repr=False)
    _root: Node = field(repr=False)

    def validate_python(self, data: object) -> JsonObject:
        """The validated instance as plain JSON, exactly as given (a private copy).

        Raises `pydantic.ValidationError` with locations (such as `('address', 'zip')`)
        when `data` is not valid; that is what pydantic-ai feeds back to the model.
        """
        return self._validator.validate(data)

    def validate_json(self, data: str | bytes | bytearray) -> JsonObject:
        """Like `validate_python`, from JSON text parsed the way pydantic-ai parses it."""
        return cast(JsonObject, self.output_type.model_validate_json(data).root)

    def dump(self, output: SchemaOutput) -> JsonObject:
        """Plain JSON data of a validated output (pydantic-ai's `result.output`).

        Validated again (cheap), so that what is stored is guaranteed to be valid even
        if someone mutated the output's `root` after validation.
        """
        if not isinstance(output, SchemaOutput):
            raise TypeError(f"expected a compiled output instance, got {type(output).__name__}")
        return self._validator.validate(output.root)


class SchemaCompiler:
    """Checks and compiles schemas, caching compiled ones by ordered hash (LRU).

    Safe to share between threads and asyncio tasks: the cache is guarded by a lock
    that is never held while compiling, and nothing here awaits.
    """

    def __init__(self, *, budget: SchemaBudget | None = None, cache_size: int = 1024) -> None:
        if cache_size < 1:
            raise ValueError("cache_size must be at least 1")
        self._budget = budget if budget is not None else SchemaBudget()
        self._cache_size = cache_size
        self._cache: OrderedDict[str, CompiledSchema] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def budget(self) -> SchemaBudget:
        """The limits every schema is checked against."""
        return self._budget

    def check(self, schema: Mapping[str, object]) -> str:
        """Check a schema without building or caching its output type (dry runs).

        Returns the schema hash; raises `SchemaError` as `compile` would.
        """
        checked = check_schema(schema, self._budget)
        build_graph(checked, self._budget)
        return checked.schema_hash

    def compile(self, schema: Mapping[str, object]) -> CompiledSchema:
        """Check and compile a schema, or return the cached compilation of an equal one.

        Equal means the same JSON in the same key order: the output type shows the model
        the schema in `schema`'s own order. Raises `SchemaError` (with a JSON pointer)
        when the schema is refused.
        """
        checked = check_schema(schema, self._budget)
        key = _sha256(_ordered_json(checked.document))
        cached = self.lookup(key)
        if cached is not None:
            return cached
        compiled = self._build(checked, key)
        with self._lock:
            # Another caller may have compiled the same schema meanwhile: keep one.
            existing = self._cache.get(key)
            if existing is not None:
                self._cache.move_to_end(key)
                return existing
            self._cache[key] = compiled
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return compiled

    def lookup(self, ordered_hash: str) -> CompiledSchema | None:
        """The cached compilation for an `ordered_hash`, or None (a dictionary look-up)."""
        with self._lock:
            compiled = self._cache.get(ordered_hash)
            if compiled is not None:
                self._cache.move_to_end(ordered_hash)
            return compiled

    def _build(self, checked: CheckedSchema, ordered_hash: str) -> CompiledSchema:
        root = build_graph(checked, self._budget)
        validator = InstanceValidator(root, _OUTPUT_TYPE_NAME, self._budget.max_instance_depth)
        output_type = make_output_type(
            document=checked.document,
            schema_hash=checked.schema_hash,
            validate=validator.validate,
            name=_OUTPUT_TYPE_NAME,
        )
        return CompiledSchema(
            schema_hash=checked.schema_hash,
            ordered_hash=ordered_hash,
            schema=cast(JsonObject, json.loads(checked.canonical)),
            draft=checked.draft,
            output_type=output_type,
            _validator=validator,
            _root=root,
        )


def canonical_hash(schema: Mapping[str, object]) -> str:
    """sha256 (hex) of a JSON object's canonical JSON, as `CompiledSchema.schema_hash`.

    Raises `SchemaError` if `schema` is not a JSON value (or is nested absurdly deep).
    """
    copy, problem = copy_instance(schema, _CANONICAL_MAX_DEPTH)
    if problem is not None:
        location = "".join(f"/{part}" for part in problem[0])
        raise SchemaError(location, problem[2])
    return hashlib.sha256(canonical_json(copy).encode()).hexdigest()


def ordered_hash(schema: Mapping[str, object]) -> str:
    """sha256 (hex) of a JSON object's JSON in its own key order, as `CompiledSchema.ordered_hash`.

    What `SchemaCompiler.lookup` takes: a schema read back from storage finds its
    compilation without being checked again. Raises `SchemaError` as `canonical_hash`.
    """
    copy, problem = copy_instance(schema, _CANONICAL_MAX_DEPTH)
    if problem is not None:
        location = "".join(f"/{part}" for part in problem[0])
        raise SchemaError(location, problem[2])
    return _sha256(_ordered_json(copy))


def _ordered_json(document: JsonValue) -> str:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def example_instance(target: CompiledSchema | Mapping[str, object]) -> JsonObject:
    """A deterministic instance that validates against the schema.

    For the offline `test` provider (`TestModel(custom_output_args=...)`). Satisfies
    every supported keyword by construction (each candidate is checked by the exact
    validator); for `pattern` it tries short expansions of the pattern and padding
    around unanchored matches, which covers ordinary patterns. Raises `SchemaError`
    (pointing at the subschema) when no instance is found: an unsatisfiable schema, or
    a pattern combined with a format or lengths beyond that strategy.
    """
    compiled = target if isinstance(target, CompiledSchema) else SchemaCompiler(cache_size=1).compile(target)
    value = build_example(compiled._root, compiled._validator.max_depth)
    return compiled.validate_python(value)
