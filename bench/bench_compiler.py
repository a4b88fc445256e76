"""Schema compiler benchmark: cold compile, cached lookup, compile() hit, validation.

Run: `.venv/bin/python -m bench.bench_compiler` (targets: cold compile < 5 ms, lookup < 5 µs).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from pydantic import TypeAdapter
from pydantic_ai.tools import GenerateToolJsonSchema

from services.agent_svc._schema_regex import compile_pattern, python_category
from services.agent_svc.schema_compiler import SchemaCompiler, example_instance

Json = Any  # benchmark data: any JSON value


def nested_schema() -> dict[str, Json]:
    """50 properties: 40 scalars of every kind at the top, 10 nested objects, a recursive $ref."""
    kinds: list[Json] = [
        {"type": "string", "minLength": 1, "maxLength": 200, "description": "free text"},
        {"type": "string", "pattern": "^[A-Z]{2}-[0-9]{4}$"},
        {"type": "string", "format": "date-time"},
        {"type": "string", "format": "email"},
        {"type": "integer", "minimum": 0, "maximum": 1000},
        {"type": "number", "exclusiveMinimum": 0, "multipleOf": 0.5},
        {"enum": ["low", "medium", "high"]},
        {"type": ["boolean", "null"]},
        {"type": "array", "items": {"type": "string"}, "maxItems": 10, "uniqueItems": True},
        {"anyOf": [{"type": "string"}, {"type": "integer"}]},
    ]
    properties: dict[str, Json] = {f"field_{i}": kinds[i % len(kinds)] for i in range(40)}
    for i in range(10):
        properties[f"section_{i}"] = {
            "type": "object",
            "description": f"section {i}",
            "properties": {
                "title": {"type": "string"},
                "score": {"type": "number", "minimum": 0, "maximum": 1},
                "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}},
                "parent": {"$ref": "#/$defs/node"},
            },
            "required": ["title"],
            "additionalProperties": False,
        }
    return {
        "type": "object",
        "title": "Report",
        "properties": properties,
        "required": list(properties)[:25],
        "$defs": {
            "node": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                },
            }
        },
    }


def timed(function: Callable[[], object], repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        samples.append(time.perf_counter() - started)
    return samples


def summary(name: str, samples: list[float], unit: str = "ms") -> None:
    scale = {"ms": 1e3, "µs": 1e6, "ns": 1e9}[unit]
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(
        f"{name:<52} median {statistics.median(samples) * scale:9.2f} {unit}   p99 {p99 * scale:9.2f} {unit}"
    )


def main() -> None:
    schema = nested_schema()
    # One-time, per process: Python's \d \w \s tables for the regex translation.
    started = time.perf_counter()
    for name in ("d", "w", "s"):
        python_category(name)
    print(f"{'one-time regex category tables':<52} {(time.perf_counter() - started) * 1e3:9.2f} ms")

    SchemaCompiler().compile(schema)  # warm imports and pydantic's own caches
    summary(
        "cold compile, new compiler (50 properties)", timed(lambda: SchemaCompiler().compile(schema), 200)
    )

    def fully_cold() -> None:
        compile_pattern.cache_clear()
        SchemaCompiler().compile(schema)

    summary("cold compile, pattern cache cleared too", timed(fully_cold, 200))

    compiler = SchemaCompiler()
    compiled = compiler.compile(schema)
    key = compiled.ordered_hash
    batch = 1_000

    def lookups() -> None:
        for _ in range(batch):
            compiler.lookup(key)

    per_call = [sample / batch for sample in timed(lookups, 100)]
    summary(f"lookup() hit ({100 * batch:,} calls)", per_call, "ns")
    summary("compile() hit (checks + hashes + lookup)", timed(lambda: compiler.compile(schema), 300), "µs")
    summary("check() (dry run, no output type)", timed(lambda: compiler.check(schema), 200))

    instance = example_instance(compiled)
    text = json.dumps(instance)
    summary(
        "validate_python (example instance)", timed(lambda: compiled.validate_python(instance), 1_000), "µs"
    )
    summary("validate_json (example instance)", timed(lambda: compiled.validate_json(text), 1_000), "µs")
    summary("example_instance", timed(lambda: example_instance(compiled), 50))
    adapter = TypeAdapter(compiled.output_type)
    summary(
        "LLM-facing JSON Schema (pydantic-ai's generator)",
        timed(lambda: adapter.json_schema(schema_generator=GenerateToolJsonSchema), 100),
    )


if __name__ == "__main__":
    main()
