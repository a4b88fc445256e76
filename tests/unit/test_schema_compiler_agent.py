"""The compiled output type inside real pydantic-ai agents.

The model is faked with pydantic-ai's own `TestModel` / `FunctionModel`: a remote LLM
cannot run here, and these two exercise the same output-tool path (tool definition,
argument validation, retry prompt) a real provider goes through.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import referencing
from jsonschema import Draft202012Validator
from pydantic_ai import Agent, PromptedOutput
from pydantic_ai.exceptions import UnexpectedModelBehavior
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.test import TestModel

from services.agent_svc.schema_compiler import CompiledSchema, SchemaCompiler, SchemaOutput, example_instance

Json = Any  # test data: any JSON value

SCHEMA: dict[str, Json] = {
    "title": "Ticket",
    "description": "A triaged support ticket.",
    "type": "object",
    "properties": {
        "summary": {"type": "string", "minLength": 3, "description": "One line."},
        "severity": {"enum": ["low", "high", "critical"]},
        "zip": {"type": "string", "pattern": "^\\d{5}$"},
        "reported": {"type": "string", "format": "date-time"},
        "reporter": {"type": "string", "format": "email"},
        "id": {"type": "string", "format": "uuid"},
        "labels": {"type": "array", "items": {"type": "string"}, "minItems": 1, "uniqueItems": True},
        "thread": {"$ref": "#/$defs/comment"},
        "estimate": {"type": ["number", "null"], "exclusiveMinimum": 0, "multipleOf": 0.5},
    },
    "required": ["summary", "severity", "zip", "reported", "reporter", "id", "labels", "thread"],
    "additionalProperties": False,
    "$defs": {
        "comment": {
            "type": "object",
            "properties": {
                "text": {"type": "string"},
                "replies": {"type": "array", "items": {"$ref": "#/$defs/comment"}},
                "next": {"anyOf": [{"$ref": "#/$defs/comment"}, {"type": "null"}]},
            },
            "required": ["text", "next"],
        }
    },
}


@pytest.fixture(scope="module")
def compiled() -> CompiledSchema:
    return SchemaCompiler().compile(SCHEMA)


def assert_valid(data: Json) -> None:
    validator = Draft202012Validator(
        SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER, registry=referencing.Registry()
    )
    assert list(validator.iter_errors(data)) == []


@pytest.mark.asyncio
async def test_test_model_answers_with_the_example_instance(compiled: CompiledSchema) -> None:
    example = example_instance(compiled)
    agent = Agent(TestModel(custom_output_args=example), output_type=compiled.output_type)
    result = await agent.run("Triage this ticket.")
    assert isinstance(result.output, compiled.output_type)
    stored = compiled.dump(result.output)
    assert stored == example
    assert_valid(stored)


def test_run_sync_works_too(compiled: CompiledSchema) -> None:
    agent = Agent(TestModel(custom_output_args=example_instance(compiled)), output_type=compiled.output_type)
    result = agent.run_sync("Triage this ticket.")
    assert_valid(compiled.dump(result.output))


@pytest.mark.asyncio
async def test_invalid_answer_is_retried_with_located_errors(compiled: CompiledSchema) -> None:
    valid = example_instance(compiled)
    invalid = {**valid, "zip": "1234", "severity": "urgent", "labels": ["a", "a"], "extra": True}
    seen: list[list[ModelMessage]] = []
    tools: list[Json] = []

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        seen.append(messages)
        tool = info.output_tools[0]
        tools.append(tool.parameters_json_schema)
        answer = invalid if len(seen) == 1 else valid
        return ModelResponse(parts=[ToolCallPart(tool.name, json.dumps(answer))])

    agent = Agent(FunctionModel(model), output_type=compiled.output_type, retries={"output": 1})
    result = await agent.run("Triage this ticket.")

    assert len(seen) == 2
    assert compiled.dump(result.output) == valid
    # The model was told where and what: pydantic-ai forwards the ValidationError details.
    feedback = repr(seen[1][-1])
    for fragment in (
        "'loc': ['zip']",
        "String should match pattern",
        "'loc': ['severity']",
        "'loc': ['extra']",
        "Extra inputs are not permitted",
        "List items should be unique",
    ):
        assert fragment in feedback
    # ...and was shown the task's schema, keyword for keyword (the description becomes the tool's).
    expected = json.loads(json.dumps(SCHEMA))
    del expected["description"]
    assert tools[0] == expected


@pytest.mark.asyncio
async def test_answer_given_as_a_dict_is_validated_the_same(compiled: CompiledSchema) -> None:
    valid = example_instance(compiled)

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, {**valid, "estimate": 1.5})])

    result = await Agent(FunctionModel(model), output_type=compiled.output_type).run("x")
    assert compiled.dump(result.output) == {**valid, "estimate": 1.5}


@pytest.mark.asyncio
async def test_run_fails_cleanly_when_retries_run_out(compiled: CompiledSchema) -> None:
    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, json.dumps({"summary": 1}))])

    agent = Agent(FunctionModel(model), output_type=compiled.output_type, retries={"output": 1})
    with pytest.raises(UnexpectedModelBehavior):
        await agent.run("x")


@pytest.mark.asyncio
async def test_prompted_text_output_goes_through_the_json_path(compiled: CompiledSchema) -> None:
    """With prompted (text) output the answer arrives as JSON text: the validate_json path."""
    valid = example_instance(compiled)
    answers = iter([json.dumps({**valid, "estimate": 0}), json.dumps(valid)])

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[TextPart(next(answers))])

    agent = Agent(
        FunctionModel(model), output_type=PromptedOutput(compiled.output_type), retries={"output": 1}
    )
    result = await agent.run("x")
    assert isinstance(result.output, SchemaOutput)
    assert compiled.dump(result.output) == valid
