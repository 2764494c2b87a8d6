import { LlmError } from "../errors.ts";

/**
 * A grammar (GBNF text) or JSON schema cannot be used: a syntax error with its line and
 * column, an undefined rule, left recursion, or a schema keyword that cannot be enforced.
 * `param` names the request field it came from where known.
 */
export class GrammarError extends LlmError {
  constructor(message: string, code = "INVALID_GRAMMAR") {
    super(code, message);
  }
}

/** A JSON schema uses a keyword that the grammar cannot enforce; `keyword` names it. */
export class UnsupportedSchemaError extends GrammarError {
  readonly keyword: string;
  readonly path: string;
  constructor(keyword: string, path: string, detail = "cannot be enforced by constrained decoding") {
    super(`JSON schema keyword "${keyword}" at ${path} ${detail}`, "UNSUPPORTED_SCHEMA");
    this.keyword = keyword;
    this.path = path;
  }
}
