/**
 * The schema builder: every property a card (name, type, required, description and the
 * constraints that fit its type), objects and arrays of objects as nested cards,
 * definitions (`$defs`) that properties can refer to. Edits go through the pure
 * functions of `model.ts`; `convert.ts` turns the cards into the JSON Schema.
 */

import { useEffect, useState } from "react";
import { CheckboxField, NumberField, SelectField, TextArea, TextField } from "../components/forms";
import { isObject, pretty, type Json } from "../json";
import {
  changeKind,
  FORMATS,
  KIND_LABELS,
  KINDS,
  newDefinition,
  newNode,
  newProperty,
  NULLABLE_KINDS,
  referencesTo,
  renameDefinition,
  updateNode,
  type DefinitionCard,
  type PropertyCard,
  type SchemaDoc,
  type SchemaNode,
} from "./model";

export interface CardIssues {
  errors: string[];
  warnings: string[];
}

interface BuilderContext {
  doc: SchemaDoc;
  onChange: (doc: SchemaDoc) => void;
  issues: Map<string, CardIssues>;
  readOnly: boolean;
}

export function SchemaBuilder({
  doc,
  onChange,
  issues,
  readOnly = false,
}: {
  doc: SchemaDoc;
  onChange: (doc: SchemaDoc) => void;
  issues: Map<string, CardIssues>;
  readOnly?: boolean;
}) {
  const ctx: BuilderContext = { doc, onChange, issues, readOnly };
  const setNode = (id: string, update: (node: SchemaNode) => SchemaNode) => onChange(updateNode(doc, id, update));
  const root = doc.root;
  return (
    <div className="builder">
      <section className="node-card root-card" role="group" aria-label="response object">
        <header className="node-head">
          <h3>Response</h3>
          <span className="muted small">always an object</span>
        </header>
        <Issues issues={issues.get(root.id)} />
        <div className="grid-2">
          <TextField
            label="Description"
            value={root.description ?? ""}
            onChange={(v) => setNode(root.id, (n) => withOptional(n, "description", v === "" ? undefined : v))}
          />
          <ExtraPropertiesField node={root} ctx={ctx} explain />
        </div>
        <Kept node={root} ctx={ctx} label="the response" />
        <PropertyList owner={root} path="" ctx={ctx} />
      </section>
      <Definitions ctx={ctx} />
    </div>
  );
}

function withOptional<K extends keyof SchemaNode>(node: SchemaNode, key: K, value: SchemaNode[K] | undefined): SchemaNode {
  const next = { ...node };
  if (value === undefined) delete next[key];
  else next[key] = value;
  return next;
}

function Issues({ issues }: { issues: CardIssues | undefined }) {
  if (!issues || (issues.errors.length === 0 && issues.warnings.length === 0)) return null;
  return (
    <ul className="issues">
      {issues.errors.map((e) => (
        <li key={`e${e}`} className="issue-error">
          <span className="sr-only">Error: </span>
          {e}
        </li>
      ))}
      {issues.warnings.map((w) => (
        <li key={`w${w}`} className="issue-warning">
          <span className="sr-only">Warning: </span>
          {w}
        </li>
      ))}
    </ul>
  );
}

function ExtraPropertiesField({ node, ctx, explain = false }: { node: SchemaNode; ctx: BuilderContext; explain?: boolean }) {
  const value = node.additionalProperties === undefined ? "" : String(node.additionalProperties);
  return (
    <SelectField
      label="Other properties"
      value={value}
      onChange={(v) =>
        ctx.onChange(
          updateNode(ctx.doc, node.id, (n) => withOptional(n, "additionalProperties", v === "" ? undefined : v === "true")),
        )
      }
      options={[
        { value: "", label: "not stated (allowed)" },
        { value: "false", label: "forbidden" },
        { value: "true", label: "allowed" },
      ]}
      hint={explain ? "additionalProperties; OpenAI strict mode wants “forbidden”." : undefined}
    />
  );
}

/** Keywords imported that have no card: shown, kept, and removable. */
function Kept({ node, ctx, label }: { node: SchemaNode; ctx: BuilderContext; label: string }) {
  const keys = Object.keys(node.extra ?? {});
  if (keys.length === 0) return null;
  return (
    <div className="kept">
      <span>
        Kept as is (no card): <code>{keys.join(", ")}</code>
      </span>
      {!ctx.readOnly && (
        <button
          type="button"
          className="small"
          aria-label={`Discard the kept keywords of ${label}`}
          onClick={() => ctx.onChange(updateNode(ctx.doc, node.id, (n) => withOptional(n, "extra", undefined)))}
        >
          Discard
        </button>
      )}
    </div>
  );
}

function PropertyList({ owner, path, ctx }: { owner: SchemaNode; path: string; ctx: BuilderContext }) {
  const properties = owner.properties ?? [];
  const where = path || "response";
  const setProperties = (update: (list: PropertyCard[]) => PropertyCard[]) =>
    ctx.onChange(updateNode(ctx.doc, owner.id, (n) => ({ ...n, properties: update(n.properties ?? []) })));
  return (
    <div className="props">
      {properties.length === 0 && <p className="muted small">No properties yet.</p>}
      {properties.map((property, index) => (
        <PropertyView
          key={property.id}
          property={property}
          path={path ? `${path}.${property.name}` : property.name}
          ctx={ctx}
          first={index === 0}
          last={index === properties.length - 1}
          onProperty={(next) => setProperties((list) => list.map((p) => (p.id === property.id ? next : p)))}
          onMove={(delta) =>
            setProperties((list) => {
              const copy = [...list];
              const [moved] = copy.splice(index, 1);
              if (moved) copy.splice(index + delta, 0, moved);
              return copy;
            })
          }
          onRemove={() => setProperties((list) => list.filter((p) => p.id !== property.id))}
        />
      ))}
      {!ctx.readOnly && (
        <button
          type="button"
          className="add"
          aria-label={`Add property to ${where}`}
          onClick={() => setProperties((list) => [...list, newProperty(list.map((p) => p.name))])}
        >
          + Add property
        </button>
      )}
    </div>
  );
}

function PropertyView({
  property,
  path,
  ctx,
  first,
  last,
  onProperty,
  onMove,
  onRemove,
}: {
  property: PropertyCard;
  path: string;
  ctx: BuilderContext;
  first: boolean;
  last: boolean;
  onProperty: (next: PropertyCard) => void;
  onMove: (delta: number) => void;
  onRemove: () => void;
}) {
  const node = property.node;
  return (
    <section className={`node-card kind-${node.kind}`} role="group" aria-label={`property ${path}`} data-node={node.id}>
      <div className="node-head prop-head">
        <TextField
          label="Name"
          value={property.name}
          onChange={(name) => onProperty({ ...property, name })}
          className="prop-name"
          required
        />
        <KindSelect node={node} ctx={ctx} />
        <CheckboxField label="Required" checked={property.required} onChange={(required) => onProperty({ ...property, required })} />
        {!ctx.readOnly && (
          <div className="card-buttons">
            <button type="button" className="icon" aria-label={`Move ${path} up`} disabled={first} onClick={() => onMove(-1)}>
              ↑
            </button>
            <button type="button" className="icon" aria-label={`Move ${path} down`} disabled={last} onClick={() => onMove(1)}>
              ↓
            </button>
            <button type="button" className="icon danger" aria-label={`Remove ${path}`} onClick={onRemove}>
              ✕
            </button>
          </div>
        )}
      </div>
      <NodeBody node={node} path={path} ctx={ctx} />
    </section>
  );
}

function KindSelect({ node, ctx, label = "Type" }: { node: SchemaNode; ctx: BuilderContext; label?: string }) {
  return (
    <SelectField
      label={label}
      value={node.kind}
      onChange={(kind) =>
        ctx.onChange(updateNode(ctx.doc, node.id, (n) => changeKind(n, kind as SchemaNode["kind"], ctx.doc.defs)))
      }
      options={KINDS.map((k) => ({
        value: k,
        label: KIND_LABELS[k],
        disabled: k === "ref" && ctx.doc.defs.length === 0 && node.kind !== "ref",
      }))}
      className="prop-kind"
    />
  );
}

/** Everything of a card below its header: description, constraints, nested cards. */
function NodeBody({ node, path, ctx }: { node: SchemaNode; path: string; ctx: BuilderContext }) {
  const set = (update: (node: SchemaNode) => SchemaNode) => ctx.onChange(updateNode(ctx.doc, node.id, update));
  const num = (key: keyof SchemaNode) => (value: number | undefined) => set((n) => withOptional(n, key, value as never));
  return (
    <div className="node-body">
      <Issues issues={ctx.issues.get(node.id)} />
      {node.kind !== "json" && (
        <div className="grid-2">
          <TextField
            label="Description"
            value={node.description ?? ""}
            onChange={(v) => set((n) => withOptional(n, "description", v === "" ? undefined : v))}
          />
          {NULLABLE_KINDS.has(node.kind) && (
            <CheckboxField
              label="May be null"
              checked={Boolean(node.nullable)}
              onChange={(v) => set((n) => withOptional(n, "nullable", v ? true : undefined))}
            />
          )}
        </div>
      )}
      {node.kind === "string" && (
        <div className="grid-4 constraints">
          <NumberField label="Min length" integer min={0} value={node.minLength} onChange={num("minLength")} />
          <NumberField label="Max length" integer min={0} value={node.maxLength} onChange={num("maxLength")} />
          <TextField
            label="Pattern (regular expression)"
            value={node.pattern ?? ""}
            onChange={(v) => set((n) => withOptional(n, "pattern", v === "" ? undefined : v))}
          />
          <SelectField
            label="Format"
            value={node.format ?? ""}
            onChange={(v) => set((n) => withOptional(n, "format", v === "" ? undefined : v))}
            options={[{ value: "", label: "any text" }, ...FORMATS.map((f) => ({ value: f, label: f }))]}
          />
        </div>
      )}
      {(node.kind === "number" || node.kind === "integer") && (
        <div className="grid-5 constraints">
          <NumberField label="Minimum" value={node.minimum} onChange={num("minimum")} />
          <NumberField label="Maximum" value={node.maximum} onChange={num("maximum")} />
          <NumberField label="Exclusive minimum" value={node.exclusiveMinimum} onChange={num("exclusiveMinimum")} />
          <NumberField label="Exclusive maximum" value={node.exclusiveMaximum} onChange={num("exclusiveMaximum")} />
          <NumberField label="Multiple of" value={node.multipleOf} onChange={num("multipleOf")} min={0} />
        </div>
      )}
      {node.kind === "enum" && <EnumValues node={node} path={path} ctx={ctx} />}
      {node.kind === "ref" && (
        <SelectField
          label="Definition"
          value={node.ref ?? ""}
          onChange={(v) => set((n) => ({ ...n, ref: v }))}
          options={[
            ...(ctx.doc.defs.some((d) => d.name === node.ref) ? [] : [{ value: node.ref ?? "", label: "Choose a definition" }]),
            ...ctx.doc.defs.map((d) => ({ value: d.name, label: d.name })),
          ]}
        />
      )}
      {node.kind === "json" && <RawJson node={node} ctx={ctx} />}
      {node.kind === "array" && (
        <>
          <div className="grid-4 constraints">
            <NumberField label="Min items" integer min={0} value={node.minItems} onChange={num("minItems")} />
            <NumberField label="Max items" integer min={0} value={node.maxItems} onChange={num("maxItems")} />
            <CheckboxField
              label="Unique items"
              checked={Boolean(node.uniqueItems)}
              onChange={(v) => set((n) => withOptional(n, "uniqueItems", v ? true : undefined))}
            />
          </div>
          {node.items ? (
            <section className="node-card items-card" role="group" aria-label={`items of ${path}`} data-node={node.items.id}>
              <div className="node-head">
                <h4>Each item</h4>
                <KindSelect node={node.items} ctx={ctx} label="Item type" />
              </div>
              <NodeBody node={node.items} path={`${path}[]`} ctx={ctx} />
            </section>
          ) : (
            <p className="muted small">
              Items may be anything.{" "}
              {!ctx.readOnly && (
                <button type="button" className="small" onClick={() => set((n) => ({ ...n, items: newNode("string") }))}>
                  Define the items
                </button>
              )}
            </p>
          )}
        </>
      )}
      {node.kind === "object" && (
        <>
          <ExtraPropertiesField node={node} ctx={ctx} />
          {node.properties ? (
            <PropertyList owner={node} path={path} ctx={ctx} />
          ) : (
            <p className="muted small">
              Any properties.{" "}
              {!ctx.readOnly && (
                <button type="button" className="small" onClick={() => set((n) => ({ ...n, properties: [] }))}>
                  Define the properties
                </button>
              )}
            </p>
          )}
        </>
      )}
      <Kept node={node} ctx={ctx} label={path} />
    </div>
  );
}

function EnumValues({ node, path, ctx }: { node: SchemaNode; path: string; ctx: BuilderContext }) {
  const [draft, setDraft] = useState("");
  const values = node.values ?? [];
  const setValues = (next: string[]) => ctx.onChange(updateNode(ctx.doc, node.id, (n) => ({ ...n, values: next })));
  const add = () => {
    if (draft === "" || values.includes(draft)) return;
    setValues([...values, draft]);
    setDraft("");
  };
  return (
    <div className="enum">
      <span className="label" id={`${node.id}-values`}>
        Values
      </span>
      <ul className="chips" aria-labelledby={`${node.id}-values`}>
        {values.length === 0 && <li className="muted small">none yet</li>}
        {values.map((v) => (
          <li key={v} className="chip">
            <span>{v === "" ? <em>(empty)</em> : v}</span>
            {!ctx.readOnly && (
              <button
                type="button"
                className="chip-remove"
                aria-label={`Remove value ${v} of ${path}`}
                onClick={() => setValues(values.filter((x) => x !== v))}
              >
                ✕
              </button>
            )}
          </li>
        ))}
      </ul>
      {!ctx.readOnly && (
        <div className="enum-add">
          <TextField
            label="New value"
            value={draft}
            onChange={setDraft}
            onKeyDown={(event) => {
              // Enter adds the value instead of submitting the form.
              if (event.key === "Enter") {
                event.preventDefault();
                add();
              }
            }}
            hint={values.includes(draft) && draft !== "" ? "already a value" : "Enter adds it."}
          />
          <button type="button" onClick={add} disabled={draft === "" || values.includes(draft)} aria-label={`Add value to ${path}`}>
            Add value
          </button>
        </div>
      )}
    </div>
  );
}

function RawJson({ node, ctx }: { node: SchemaNode; ctx: BuilderContext }) {
  const [text, setText] = useState(pretty(node.raw ?? {}));
  const [error, setError] = useState("");
  useEffect(() => {
    try {
      if (JSON.stringify(JSON.parse(text)) === JSON.stringify(node.raw)) return;
    } catch {
      // the text is being edited; an outside change still replaces it below
    }
    setText(pretty(node.raw ?? {}));
  }, [node.raw]); // only an outside change of the value resets the text
  return (
    <TextArea
      label="Schema (JSON)"
      value={text}
      rows={5}
      monospace
      readOnly={ctx.readOnly}
      errors={error ? [error] : undefined}
      hint="Any JSON Schema the cards cannot express (anyOf, const, …)."
      onChange={(next) => {
        setText(next);
        try {
          const parsed = JSON.parse(next) as Json;
          if (!isObject(parsed) && typeof parsed !== "boolean") {
            setError("a schema is a JSON object");
            return;
          }
          setError("");
          ctx.onChange(updateNode(ctx.doc, node.id, (n) => ({ ...n, raw: parsed })));
        } catch {
          setError("not valid JSON yet");
        }
      }}
    />
  );
}

function Definitions({ ctx }: { ctx: BuilderContext }) {
  const { doc, onChange, readOnly } = ctx;
  const setDefs = (defs: DefinitionCard[]) => onChange({ ...doc, defs });
  if (readOnly && doc.defs.length === 0) return null;
  return (
    <section className="defs" aria-labelledby="defs-title">
      <h3 id="defs-title">Definitions</h3>
      <p className="hint">Reusable shapes ($defs): a property of type “definition” refers to one.</p>
      {doc.defs.map((def) => {
        const uses = referencesTo(doc, def.name).length;
        return (
          <section key={def.id} className="node-card def-card" role="group" aria-label={`definition ${def.name}`} data-node={def.node.id}>
            <div className="node-head prop-head">
              <TextField label="Definition name" value={def.name} onChange={(name) => onChange(renameDefinition(doc, def.id, name))} required />
              <KindSelect node={def.node} ctx={ctx} />
              <span className="muted small">
                used by {uses} propert{uses === 1 ? "y" : "ies"}
              </span>
              {!readOnly && (
                <div className="card-buttons">
                  <button
                    type="button"
                    className="icon danger"
                    aria-label={`Remove definition ${def.name}`}
                    disabled={uses > 0}
                    title={uses > 0 ? "Still used by a property" : undefined}
                    onClick={() => setDefs(doc.defs.filter((d) => d.id !== def.id))}
                  >
                    ✕
                  </button>
                </div>
              )}
            </div>
            <NodeBody node={def.node} path={`$defs.${def.name}`} ctx={ctx} />
          </section>
        );
      })}
      {!readOnly && (
        <button type="button" className="add" onClick={() => setDefs([...doc.defs, newDefinition(doc.defs.map((d) => d.name))])}>
          + Add definition
        </button>
      )}
    </section>
  );
}
