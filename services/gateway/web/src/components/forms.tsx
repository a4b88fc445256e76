/** Labelled form controls, and API errors placed next to the field they name. */

import { useEffect, useId, useState, type KeyboardEvent, type ReactNode } from "react";
import { ApiError } from "../api/client";

// --- errors ------------------------------------------------------------------------

export interface FormErrors {
  /** Known field → messages (a deeper path, e.g. `config.headers.X`, lands on `config`). */
  byField: Record<string, string[]>;
  /** What names no field of the form. */
  general: string[];
  /** The summary line. */
  message: string;
  status: number;
}

export const NO_ERRORS: FormErrors = { byField: {}, general: [], message: "", status: 0 };

export function formErrors(error: unknown, known: readonly string[]): FormErrors {
  if (!error) return NO_ERRORS;
  if (!(error instanceof ApiError)) {
    return { byField: {}, general: [], message: error instanceof Error ? error.message : String(error), status: 0 };
  }
  const byField: Record<string, string[]> = {};
  const general: string[] = [];
  for (const [field, descriptions] of Object.entries(error.fields)) {
    const owner = [...known]
      .sort((a, b) => b.length - a.length)
      .find((k) => field === k || field.startsWith(`${k}.`));
    for (const description of descriptions) {
      if (owner === undefined) general.push(`${field}: ${description}`);
      else (byField[owner] ??= []).push(field === owner ? description : `${field.slice(owner.length + 1)}: ${description}`);
    }
  }
  const placedAll = Object.keys(byField).length > 0 && general.length === 0;
  return {
    byField,
    general,
    message: placedAll ? "Please correct the fields marked below." : error.message,
    status: error.status,
  };
}

export function ErrorBanner({ errors, children }: { errors: FormErrors; children?: ReactNode }) {
  if (!errors.message && errors.general.length === 0) return null;
  return (
    <div className="banner banner-error" role="alert">
      {errors.message && <p>{errors.message}</p>}
      {errors.general.length > 0 && (
        <ul>
          {errors.general.map((g) => (
            <li key={g}>{g}</li>
          ))}
        </ul>
      )}
      {children}
    </div>
  );
}

// --- fields --------------------------------------------------------------------------

interface FieldProps {
  label: ReactNode;
  hint?: ReactNode;
  errors?: string[] | undefined;
  required?: boolean;
  className?: string;
}

function Frame({
  id,
  label,
  hint,
  errors,
  required,
  className,
  children,
}: FieldProps & { id: string; children: ReactNode }) {
  return (
    <div className={`field ${className ?? ""}`}>
      <div className="label-row">
        <label htmlFor={id}>{label}</label>
        {/* outside the label, so the control's name stays "Name"; `required` says it to assistive tech */}
        {required && (
          <span className="required-mark" aria-hidden="true">
            *
          </span>
        )}
      </div>
      {children}
      {hint && (
        <p className="hint" id={`${id}-hint`}>
          {hint}
        </p>
      )}
      {errors?.map((e) => (
        <p className="field-error" id={`${id}-error`} key={e}>
          {e}
        </p>
      ))}
    </div>
  );
}

function describedBy(id: string, hint: unknown, errors: string[] | undefined): string | undefined {
  const ids = [hint ? `${id}-hint` : "", errors?.length ? `${id}-error` : ""].filter(Boolean);
  return ids.length ? ids.join(" ") : undefined;
}

export function TextField({
  value,
  onChange,
  type = "text",
  placeholder,
  autoFocus,
  autoComplete,
  readOnly,
  list,
  onKeyDown,
  ...frame
}: FieldProps & {
  value: string;
  onChange: (value: string) => void;
  onKeyDown?: (event: KeyboardEvent<HTMLInputElement>) => void;
  type?: string;
  placeholder?: string;
  autoFocus?: boolean;
  autoComplete?: string;
  readOnly?: boolean;
  list?: string;
}) {
  const id = useId();
  return (
    <Frame id={id} {...frame}>
      <input
        id={id}
        type={type}
        value={value}
        placeholder={placeholder}
        autoFocus={autoFocus}
        autoComplete={autoComplete ?? "off"}
        readOnly={readOnly}
        list={list}
        required={frame.required}
        aria-invalid={frame.errors?.length ? true : undefined}
        aria-describedby={describedBy(id, frame.hint, frame.errors)}
        onChange={(e) => onChange(e.target.value)}
        onKeyDown={onKeyDown}
      />
    </Frame>
  );
}

export function TextArea({
  value,
  onChange,
  rows = 4,
  placeholder,
  readOnly,
  monospace,
  ...frame
}: FieldProps & {
  value: string;
  onChange?: (value: string) => void;
  rows?: number;
  placeholder?: string;
  readOnly?: boolean;
  monospace?: boolean;
}) {
  const id = useId();
  return (
    <Frame id={id} {...frame}>
      <textarea
        id={id}
        value={value}
        rows={rows}
        placeholder={placeholder}
        readOnly={readOnly}
        className={monospace ? "mono" : undefined}
        spellCheck={monospace ? false : undefined}
        aria-invalid={frame.errors?.length ? true : undefined}
        aria-describedby={describedBy(id, frame.hint, frame.errors)}
        onChange={(e) => onChange?.(e.target.value)}
      />
    </Frame>
  );
}

/** A number field that keeps what is typed until it is a number (empty: unset). */
export function NumberField({
  value,
  onChange,
  integer,
  min,
  max,
  step,
  placeholder,
  ...frame
}: FieldProps & {
  value: number | undefined;
  onChange: (value: number | undefined) => void;
  integer?: boolean;
  min?: number;
  max?: number;
  step?: number | "any";
  placeholder?: string;
}) {
  const id = useId();
  const [text, setText] = useState(value === undefined ? "" : String(value));
  const [local, setLocal] = useState<string | null>(null);
  useEffect(() => {
    const parsed = text.trim() === "" ? undefined : Number(text);
    if (parsed !== value) setText(value === undefined ? "" : String(value));
  }, [value]);
  const errors = local ? [local, ...(frame.errors ?? [])] : frame.errors;
  return (
    <Frame id={id} {...frame} errors={errors}>
      <input
        id={id}
        type="number"
        inputMode={integer ? "numeric" : "decimal"}
        value={text}
        min={min}
        max={max}
        step={step ?? (integer ? 1 : "any")}
        placeholder={placeholder}
        aria-invalid={errors?.length ? true : undefined}
        aria-describedby={describedBy(id, frame.hint, errors)}
        onChange={(e) => {
          const next = e.target.value;
          setText(next);
          if (next.trim() === "") {
            setLocal(null);
            onChange(undefined);
            return;
          }
          const parsed = Number(next);
          if (!Number.isFinite(parsed)) setLocal("not a number");
          else if (integer && !Number.isInteger(parsed)) setLocal("a whole number");
          else {
            setLocal(null);
            onChange(parsed);
          }
        }}
      />
    </Frame>
  );
}

export function SelectField({
  value,
  onChange,
  options,
  ...frame
}: FieldProps & {
  value: string;
  onChange: (value: string) => void;
  options: readonly (string | { value: string; label: string; disabled?: boolean })[];
}) {
  const id = useId();
  const { label, hint, errors, required, className } = frame;
  return (
    <Frame id={id} label={label} hint={hint} errors={errors} required={required} className={className}>
      <select
        id={id}
        value={value}
        required={required}
        aria-invalid={errors?.length ? true : undefined}
        aria-describedby={describedBy(id, hint, errors)}
        onChange={(e) => onChange(e.target.value)}
      >
        {options.map((o) => {
          const option = typeof o === "string" ? { value: o, label: o } : o;
          return (
            <option key={option.value} value={option.value} disabled={option.disabled}>
              {option.label}
            </option>
          );
        })}
      </select>
    </Frame>
  );
}

export function CheckboxField({
  checked,
  onChange,
  label,
  hint,
}: {
  checked: boolean;
  onChange: (checked: boolean) => void;
  label: ReactNode;
  hint?: ReactNode;
}) {
  const id = useId();
  return (
    <div className="field field-checkbox">
      <input
        id={id}
        type="checkbox"
        checked={checked}
        aria-describedby={hint ? `${id}-hint` : undefined}
        onChange={(e) => onChange(e.target.checked)}
      />
      <label htmlFor={id}>{label}</label>
      {hint && (
        <p className="hint" id={`${id}-hint`}>
          {hint}
        </p>
      )}
    </div>
  );
}
