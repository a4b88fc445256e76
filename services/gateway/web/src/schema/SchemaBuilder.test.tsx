// @vitest-environment jsdom
import { cleanup, fireEvent, render, screen, within } from "@testing-library/react";
import { useState } from "react";
import { afterEach, describe, expect, it } from "vitest";
import { fromJsonSchema, toJsonSchema } from "./convert";
import { issuesByCard } from "./issues";
import { emptyDoc, type SchemaDoc } from "./model";
import { SchemaBuilder } from "./SchemaBuilder";

afterEach(cleanup);

function Harness({ initial = emptyDoc(), readOnly = false }: { initial?: SchemaDoc; readOnly?: boolean }) {
  const [doc, setDoc] = useState(initial);
  return (
    <>
      <SchemaBuilder doc={doc} onChange={setDoc} issues={issuesByCard(doc, null)} readOnly={readOnly} />
      <pre data-testid="preview">{JSON.stringify(toJsonSchema(doc))}</pre>
    </>
  );
}

const preview = () => JSON.parse(screen.getByTestId("preview").textContent ?? "{}");
const group = (name: string) => screen.getByRole("group", { name });
const type = (input: HTMLElement, value: string) => fireEvent.change(input, { target: { value } });

function addProperty(owner: string, name: string, kind: string) {
  fireEvent.click(screen.getByRole("button", { name: `Add property to ${owner}` }));
  const fresh = screen.getAllByRole("group", { name: /^property .*field_1$/ }).at(-1) as HTMLElement;
  type(within(fresh).getAllByLabelText("Name")[0] as HTMLElement, name);
  const path = owner === "response" ? name : `${owner}.${name}`;
  type(within(group(`property ${path}`)).getAllByLabelText("Type")[0] as HTMLElement, kind);
  return group(`property ${path}`);
}

describe("the schema builder", () => {
  it("builds a nested schema with an enum and an array of objects by clicking and typing", () => {
    render(<Harness />);
    const sentiment = addProperty("response", "sentiment", "enum");
    for (const value of ["positive", "negative"]) {
      type(within(sentiment).getByLabelText("New value"), value);
      fireEvent.click(within(sentiment).getByRole("button", { name: "Add value to sentiment" }));
    }
    // Enter in the value field adds too
    type(within(sentiment).getByLabelText("New value"), "neutral");
    fireEvent.keyDown(within(sentiment).getByLabelText("New value"), { key: "Enter" });

    const title = addProperty("response", "title", "string");
    type(within(title).getByLabelText("Min length"), "1");
    type(within(title).getByLabelText("Format"), "email");
    fireEvent.click(within(title).getByLabelText("Required")); // now optional

    const items = addProperty("response", "items", "array");
    type(within(items).getByLabelText("Min items"), "1");
    type(within(group("items of items")).getByLabelText("Item type"), "object");
    const qty = addProperty("items[]", "qty", "integer");
    type(within(qty).getByLabelText("Minimum"), "1");
    type(within(qty).getByLabelText("Description"), "how many");

    expect(preview()).toEqual({
      type: "object",
      properties: {
        sentiment: { type: "string", enum: ["positive", "negative", "neutral"] },
        title: { type: "string", minLength: 1, format: "email" },
        items: {
          type: "array",
          items: { type: "object", properties: { qty: { type: "integer", description: "how many", minimum: 1 } }, required: ["qty"] },
          minItems: 1,
        },
      },
      required: ["sentiment", "items"],
    });
  });

  it("shows the constraints that fit the type only", () => {
    render(<Harness />);
    const card = addProperty("response", "n", "number");
    expect(within(card).queryByLabelText("Min length")).toBeNull();
    expect(within(card).getByLabelText("Exclusive maximum")).toBeTruthy();
    type(within(card).getAllByLabelText("Type")[0] as HTMLElement, "string");
    expect(within(card).queryByLabelText("Exclusive maximum")).toBeNull();
    expect(within(card).getByLabelText("Pattern (regular expression)")).toBeTruthy();
  });

  it("moves and removes properties", () => {
    render(<Harness />);
    addProperty("response", "a", "string");
    addProperty("response", "b", "boolean");
    fireEvent.click(screen.getByRole("button", { name: "Move b up" }));
    expect(Object.keys(preview().properties)).toEqual(["b", "a"]);
    fireEvent.click(screen.getByRole("button", { name: "Remove a" }));
    expect(preview()).toEqual({ type: "object", properties: { b: { type: "boolean" } }, required: ["b"] });
  });

  it("refers to definitions and renames the references with them", () => {
    render(<Harness />);
    fireEvent.click(screen.getByRole("button", { name: "+ Add definition" }));
    const address = addProperty("response", "home", "ref");
    expect(preview().properties.home).toEqual({ $ref: "#/$defs/Definition_1" });
    type(within(group("definition Definition_1")).getByLabelText("Definition name"), "Address");
    expect(preview().properties.home).toEqual({ $ref: "#/$defs/Address" });
    expect(within(address).getByLabelText("Definition")).toHaveProperty("value", "Address");
    expect(screen.getByRole("button", { name: "Remove definition Address" })).toHaveProperty("disabled", true);
  });

  it("shows the server's verdict on the card its pointer names", () => {
    const { doc } = fromJsonSchema({
      type: "object",
      properties: { author: { type: "object", properties: { name: { type: "string", pattern: "(?<=x)" } } } },
    });
    const issues = issuesByCard(doc, {
      errors: [{ pointer: "/properties/author/properties/name/pattern", message: "lookbehind is not supported", provider_types: [] }],
      warnings: [{ pointer: "/properties/author", message: "OpenAI strict mode wants additionalProperties: false", provider_types: ["openai"] }],
    });
    render(<SchemaBuilder doc={doc} onChange={() => undefined} issues={issues} />);
    expect(within(group("property author.name")).getByText("pattern: lookbehind is not supported")).toBeTruthy();
    const authorIssues = within(group("property author")).getAllByRole("listitem").map((li) => li.textContent);
    expect(authorIssues).toContain("Warning: OpenAI strict mode wants additionalProperties: false (openai)");
  });

  it("flags duplicate names before asking the server", () => {
    render(<Harness />);
    addProperty("response", "same", "string");
    fireEvent.click(screen.getByRole("button", { name: "Add property to response" }));
    type(within(group("property field_1")).getAllByLabelText("Name")[0] as HTMLElement, "same");
    expect(within(group("response object")).getByText('two properties are named "same"')).toBeTruthy();
  });

  it("has no editing buttons when read-only", () => {
    const { doc } = fromJsonSchema({ type: "object", properties: { a: { type: "string", enum: ["x"] } }, $defs: { D: { type: "string" } } });
    render(<Harness initial={doc} readOnly />);
    expect(screen.queryAllByRole("button")).toEqual([]);
  });
});
