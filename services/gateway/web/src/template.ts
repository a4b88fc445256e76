/**
 * Prompt template variables, exactly as the agent service reads them: `{name}` is a
 * variable (letters, digits and `_`, not starting with a digit, at most 64
 * characters), `{{` and `}}` are literal braces, any other brace is an error.
 */

export interface TemplateProblem {
  /** Character offset in the template. */
  at: number;
  message: string;
}

export interface TemplateScan {
  /** Variables in order of first use, each once. */
  variables: string[];
  problems: TemplateProblem[];
}

const PLACEHOLDER = /\{\{|\}\}|\{([^{}]*)\}|[{}]/g;
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;

export function scanTemplate(template: string): TemplateScan {
  const variables: string[] = [];
  const problems: TemplateProblem[] = [];
  for (const match of template.matchAll(PLACEHOLDER)) {
    const text = match[0];
    const at = match.index ?? 0;
    if (text === "{{" || text === "}}") continue;
    const name = match[1];
    if (name === undefined) {
      problems.push({ at, message: `unmatched '${text}' at character ${at}; write '${text}${text}' for a literal brace` });
    } else if (!IDENTIFIER.test(name)) {
      problems.push({
        at,
        message: `'{${name}}' at character ${at} is not a variable name (letters, digits and '_', not starting with a digit)`,
      });
    } else if (!variables.includes(name)) {
      variables.push(name);
    }
  }
  return { variables, problems };
}
