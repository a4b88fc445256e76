"""The output type handed to pydantic-ai, and the JSON Schema the model is shown.

The output type is a `RootModel` whose only validator is the exact instance validator
(no pydantic field ever coerces, drops or invents a value), and whose JSON Schema is the
task's own schema, rendered through pydantic's JSON Schema generator:

* every annotation and assertion keyword is passed through unchanged, so the model sees
  the task's descriptions, enums, bounds, patterns, formats and `required` as written;
* `$schema`, `$id` and `$comment` are dropped (noise for a model);
* `$defs`/`definitions` entries become pydantic definitions and each `$ref` a pydantic
  reference, so pydantic places them under the top-level `$defs` (renaming an entry
  only when its name is not `[A-Za-z0-9_-]+`). That is what lets recursive schemas
  through: pydantic cannot take a raw `$defs` from a JSON Schema hook (pydantic#12145,
  the reason pydantic-ai's own `StructuredDict` refuses recursive schemas).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Final, cast

from pydantic import ConfigDict, GetCoreSchemaHandler, GetJsonSchemaHandler, RootModel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from libs.common.jsonvalue import JsonObject, JsonValue
from services.agent_svc._schema_validate import split_ref

__all__ = ["SchemaOutput", "make_output_type"]

_DROPPED: Final = frozenset({"$schema", "$id", "$comment", "$defs", "definitions"})
_SCHEMA_MAPS: Final = frozenset({"properties"})
_SCHEMA_VALUES: Final = frozenset({"additionalProperties", "items"})
_SCHEMA_LISTS: Final = frozenset({"anyOf", "oneOf"})
_UNSAFE_NAME: Final = re.compile(r"[^A-Za-z0-9_-]")


class SchemaOutput(RootModel[dict[str, object]]):
    """Base of every compiled output type; `root` holds the validated JSON object.

    Instances come from validation only (pydantic-ai's `result.output`, or
    `model_validate`/`model_validate_json` on a compiled type). Turn one back into
    plain JSON with `CompiledSchema.dump`.
    """

    model_config = ConfigDict(frozen=True)


SchemaOutput.__module__ = "services.agent_svc.schema_compiler"


def _definition_names(document: JsonObject, tag: str) -> dict[tuple[str, str], str]:
    """A pydantic core reference per definition; the part before ':' becomes its name."""
    names: dict[tuple[str, str], str] = {}
    used: set[str] = set()
    for container in ("$defs", "definitions"):
        entries = document.get(container)
        if not isinstance(entries, dict):
            continue
        for name in entries:
            base = _UNSAFE_NAME.sub("_", name) or "def"
            safe, counter = base, 1
            while safe in used:
                counter += 1
                safe = f"{base}_{counter}"
            used.add(safe)
            names[(container, name)] = f"{safe}:agentmgr-{tag}-{len(names)}"
    return names


@dataclass(frozen=True, slots=True, eq=False)
class _Renderer:
    document: JsonObject
    core_refs: dict[tuple[str, str], str]

    def render(self, value: JsonValue, handler: GetJsonSchemaHandler) -> JsonValue:
        """The LLM-facing form of one subschema (recursion bounded by the schema budget)."""
        if not isinstance(value, dict):
            return value
        out: JsonObject = {}
        for key, argument in value.items():
            if key in _DROPPED:
                continue
            if key == "$ref":
                _, container, name = split_ref(cast(str, argument))
                target = core_schema.definition_reference_schema(self.core_refs[(container, name)])
                reference = handler(target)
                out["$ref"] = reference["$ref"]
            elif key in _SCHEMA_MAPS:
                entries = cast(JsonObject, argument)
                out[key] = {name: self.render(sub, handler) for name, sub in entries.items()}
            elif key in _SCHEMA_VALUES:
                out[key] = self.render(argument, handler)
            elif key in _SCHEMA_LISTS:
                out[key] = [self.render(sub, handler) for sub in cast(list[JsonValue], argument)]
            else:
                # Data (enum, const, default, examples, ...): a copy, because pydantic and
                # pydantic-ai edit the schemas they are given in place.
                out[key] = copy.deepcopy(argument)
        return out

    def core(self, value: JsonValue, ref: str | None = None) -> CoreSchema:
        def annotate(_: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
            return cast(JsonSchemaValue, self.render(value, handler))

        metadata = {"pydantic_js_annotation_functions": [annotate]}
        return core_schema.any_schema(ref=ref, metadata=metadata)

    def json_schema_input(self) -> CoreSchema:
        definitions = []
        for (container, name), ref in self.core_refs.items():
            entries = cast(JsonObject, self.document[container])
            definitions.append(self.core(entries[name], ref))
        return core_schema.definitions_schema(self.core(self.document), definitions)


@dataclass(frozen=True, slots=True, eq=False)
class _ExactJson:
    """The annotation that gives the output type its validator and its JSON Schema."""

    validate: Callable[[object], JsonObject]
    json_schema_input: CoreSchema

    def __get_pydantic_core_schema__(self, source: object, handler: GetCoreSchemaHandler) -> CoreSchema:
        # A plain validator: the input (Python objects, or JSON parsed by pydantic-core)
        # reaches the exact validator untouched; nothing is coerced before or after.
        return core_schema.no_info_plain_validator_function(
            self.validate, json_schema_input_schema=self.json_schema_input
        )


def make_output_type(
    *, document: JsonObject, schema_hash: str, validate: Callable[[object], JsonObject], name: str
) -> type[SchemaOutput]:
    """Build the `RootModel` subclass for one schema."""
    renderer = _Renderer(document, _definition_names(document, schema_hash[:12]))
    has_title = "title" in document

    def without_invented_title(schema: JsonSchemaValue) -> None:
        # pydantic titles a model after its class; the model should only see the task's title.
        if not has_title:
            schema.pop("title", None)

    annotation = Annotated[dict[str, object], _ExactJson(validate, renderer.json_schema_input())]
    namespace = {
        "__module__": SchemaOutput.__module__,
        "__qualname__": name,
        "__annotations__": {"root": annotation},
        "model_config": ConfigDict(frozen=True, json_schema_extra=without_invented_title),
    }
    return cast(type[SchemaOutput], type(name, (SchemaOutput,), namespace))
