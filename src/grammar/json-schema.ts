/**
 * JSON schema → GBNF, following llama.cpp's common/json-schema-to-grammar.cpp: the same
 * primitive rules (`space`, `string`, `char`, `number`, ...), the same object layout
 * (required properties in schema order, then optional ones in order, each at most once),
 * and, as there, an object without `additionalProperties` allows no other keys.
 *
 * A keyword that changes which documents are valid but that the grammar cannot enforce
 * (`pattern`, `minimum`, `not`, ...) is refused with {@link UnsupportedSchemaError} naming
 * it, rather than silently producing output that may not conform.
 */
import { UnsupportedSchemaError } from "./errors.ts";

/** A JSON schema (draft 2020-12 subset); see {@link jsonSchemaToGbnf} for what is enforced. */
export type JsonSchema = boolean | { readonly [keyword: string]: unknown };

/** Options of {@link jsonSchemaToGbnf}. */
export interface JsonSchemaGrammarOptions {
  /**
   * Whitespace between tokens: `flexible` is llama.cpp's (`""`, one space, or one or two
   * newlines and up to 20 spaces or tabs); `compact` allows one optional space, which
   * bounds the length of the output of a bounded schema more tightly. Default flexible.
   */
  readonly whitespace?: "flexible" | "compact";
}

const SPACE_RULES = {
  flexible: '| " " | "\\n"{1,2} [ \\t]{0,20}',
  compact: '" "?',
} as const;

interface BuiltinRule {
  readonly content: string;
  readonly deps: readonly string[];
}

const PRIMITIVE_RULES: Record<string, BuiltinRule> = {
  boolean: { content: '("true" | "false")', deps: [] },
  "decimal-part": { content: "[0-9]{1,16}", deps: [] },
  "integral-part": { content: "[0] | [1-9] [0-9]{0,15}", deps: [] },
  number: { content: '("-"? integral-part) ("." decimal-part)? ([eE] [-+]? integral-part)?', deps: ["integral-part", "decimal-part"] },
  integer: { content: '("-"? integral-part)', deps: ["integral-part"] },
  value: { content: "object | array | string | number | boolean | null", deps: ["object", "array", "string", "number", "boolean", "null"] },
  object: { content: '"{" space ( string ":" space value ("," space string ":" space value)* )? space "}"', deps: ["string", "value"] },
  array: { content: '"[" space ( value ("," space value)* )? space "]"', deps: ["value"] },
  uuid: { content: '"\\"" [0-9a-fA-F]{8} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{12} "\\""', deps: [] },
  char: { content: '[^"\\\\\\x7F\\x00-\\x1F] | [\\\\] (["\\\\bfnrt] | "u" [0-9a-fA-F]{4})', deps: [] },
  string: { content: '"\\"" char* "\\""', deps: ["char"] },
  null: { content: '"null"', deps: [] },
  date: { content: '[0-9]{4} "-" ( "0" [1-9] | "1" [0-2] ) "-" ( "0" [1-9] | [1-2] [0-9] | "3" [0-1] )', deps: [] },
  time: { content: '([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{3} )? ( "Z" | ( "+" | "-" ) ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] )', deps: [] },
  "date-time": { content: 'date "T" time', deps: ["date", "time"] },
  "date-string": { content: '"\\"" date "\\""', deps: ["date"] },
  "time-string": { content: '"\\"" time "\\""', deps: ["time"] },
  "date-time-string": { content: '"\\"" date-time "\\""', deps: ["date-time"] },
};

/** Keywords that describe but do not constrain: ignored, as every validator does. */
const ANNOTATIONS = new Set(["title", "description", "$schema", "$id", "$comment", "default", "examples", "deprecated", "readOnly", "writeOnly", "$defs", "definitions"]);
/** Keywords this converter enforces. */
const ENFORCED = new Set([
  "type", "enum", "const", "properties", "required", "additionalProperties", "items", "prefixItems",
  "minItems", "maxItems", "minLength", "maxLength", "anyOf", "oneOf", "$ref", "format",
]);
const FORMATS: Record<string, string> = { date: "date-string", time: "time-string", "date-time": "date-time-string", uuid: "uuid" };
const TYPES = new Set(["string", "number", "integer", "boolean", "null", "object", "array"]);

/**
 * The GBNF grammar (root rule `root`) whose matches are exactly the JSON texts valid
 * under `schema`, in llama.cpp's conventions. Enforced: `type` (one or a list), `enum`,
 * `const`, `properties`, `required`, `additionalProperties` (absent means none, as in
 * llama.cpp), `items`, `prefixItems`, `minItems`, `maxItems`, `minLength`, `maxLength`,
 * `anyOf`, `oneOf` (as anyOf), local `$ref`s (`#/$defs/...`, `#/definitions/...`), and
 * `format` date, time, date-time and uuid. Throws {@link UnsupportedSchemaError} naming
 * any other keyword, or a bad value of one of these.
 */
export function jsonSchemaToGbnf(schema: JsonSchema, options: JsonSchemaGrammarOptions = {}): string {
  const converter = new SchemaConverter(schema, SPACE_RULES[options.whitespace ?? "flexible"]);
  converter.visit(schema, "", "#");
  return converter.format();
}

class SchemaConverter {
  private readonly rules = new Map<string, string>();
  private readonly refsInProgress = new Set<string>();

  constructor(private readonly rootSchema: JsonSchema, space: string) {
    this.rules.set("space", space);
  }

  format(): string {
    return [...this.rules].map(([name, body]) => `${name} ::= ${body}`).join("\n") + "\n";
  }

  /** Adds the rule for `schema` and returns its name. */
  visit(schema: JsonSchema, name: string, path: string): string {
    const ruleName = name === "" ? "root" : name in PRIMITIVE_RULES || name === "space" ? `${name}-` : name;
    const sub = name === "" ? "" : `${name}-`;
    if (schema === true) return this.addRule(ruleName, this.primitive("value"));
    if (schema === false) throw new UnsupportedSchemaError("false", path, "matches nothing, so no output can conform");
    if (typeof schema !== "object" || schema === null || Array.isArray(schema)) {
      throw new UnsupportedSchemaError(typeof schema, path, "is not a schema: a schema is an object or a boolean");
    }
    for (const key of Object.keys(schema)) {
      if (!ANNOTATIONS.has(key) && !ENFORCED.has(key)) throw new UnsupportedSchemaError(key, path);
    }
    const s = schema as Record<string, unknown>;
    if (s.$ref !== undefined) return this.addRule(ruleName, this.resolveRef(s.$ref, path));
    const union = s.anyOf ?? s.oneOf;
    if (union !== undefined) {
      const key = s.anyOf !== undefined ? "anyOf" : "oneOf";
      if (!Array.isArray(union) || union.length === 0) throw new UnsupportedSchemaError(key, path, "must be a non-empty array");
      const alts = union.map((alt, i) => this.visit(alt as JsonSchema, `${sub}${i}`, `${path}/${key}/${i}`));
      return this.addRule(ruleName, alts.join(" | "));
    }
    if (s.const !== undefined) return this.addRule(ruleName, constantRule(s.const));
    if (s.enum !== undefined) {
      if (!Array.isArray(s.enum) || s.enum.length === 0) throw new UnsupportedSchemaError("enum", path, "must be a non-empty array");
      return this.addRule(ruleName, `(${s.enum.map(constantRule).join(" | ")})`);
    }
    const type = s.type;
    if (Array.isArray(type)) {
      const alts = type.map((t, i) => this.visit({ ...s, type: t }, `${sub}${typeof t === "string" ? t : i}`, `${path}/type/${i}`));
      return this.addRule(ruleName, alts.join(" | "));
    }
    if (type !== undefined && (typeof type !== "string" || !TYPES.has(type))) {
      throw new UnsupportedSchemaError("type", path, `has value ${JSON.stringify(type)}, which is not a JSON schema type`);
    }
    if (type === "object" || (type === undefined && (s.properties !== undefined || s.additionalProperties !== undefined))) {
      return this.objectRule(s, name, ruleName, path);
    }
    if (type === "array" || (type === undefined && (s.items !== undefined || s.prefixItems !== undefined))) {
      return this.arrayRule(s, sub, ruleName, path);
    }
    if (type === "string" || (type === undefined && (s.minLength !== undefined || s.maxLength !== undefined || s.format !== undefined))) {
      return this.stringRule(s, ruleName, path);
    }
    if (type === undefined) return this.addRule(ruleName, this.primitive("value"));
    return this.addRule(ruleName, this.primitive(type));
  }

  private objectRule(s: Record<string, unknown>, name: string, ruleName: string, path: string): string {
    const properties = (s.properties ?? {}) as Record<string, JsonSchema>;
    if (typeof properties !== "object" || Array.isArray(properties)) throw new UnsupportedSchemaError("properties", path, "must be an object");
    const required = new Set(asStringList(s.required ?? [], "required", path));
    for (const key of required) {
      if (!(key in properties)) throw new UnsupportedSchemaError("required", path, `names "${key}", which is not in properties`);
    }
    const additional = s.additionalProperties as JsonSchema | undefined;
    // As in llama.cpp, `{"type": "object"}` alone is any object; named properties without
    // `additionalProperties` allow no others.
    const anyValue = additional === undefined || additional === true || (typeof additional === "object" && Object.keys(additional).length === 0);
    if (Object.keys(properties).length === 0 && anyValue) {
      return this.addRule(ruleName, this.primitive("object"));
    }
    const prefix = name === "" ? "" : `${name}-`;
    const kvRules = new Map<string, string>();
    const requiredKeys: string[] = [];
    const optionalKeys: string[] = [];
    for (const [key, propSchema] of Object.entries(properties)) {
      const valueRule = this.visit(propSchema, `${prefix}${sanitize(key)}`, `${path}/properties/${key}`);
      kvRules.set(key, this.addRule(`${prefix}${sanitize(key)}-kv`, `${constantRule(key)} space ":" space ${valueRule}`));
      (required.has(key) ? requiredKeys : optionalKeys).push(key);
    }
    if (additional !== undefined && additional !== false) {
      const valueRule = additional === true ? this.primitive("value") : this.visit(additional, `${prefix}additional-value`, `${path}/additionalProperties`);
      const keyRule = Object.keys(properties).length === 0 ? this.primitive("string") : this.addRule(`${prefix}additional-k`, this.notStrings(Object.keys(properties)));
      kvRules.set("*", this.addRule(`${prefix}additional-kv`, `${keyRule} ":" space ${valueRule}`));
      optionalKeys.push("*");
    }
    if (requiredKeys.length === 0 && optionalKeys.length === 0) return this.addRule(ruleName, '"{" space "}"');
    let rule = '"{" space ' + requiredKeys.map((k) => kvRules.get(k)).join(' "," space ');
    if (optionalKeys.length > 0) {
      const rest = (keys: string[], firstOptional: boolean): string => {
        const k = keys[0]!;
        const kv = kvRules.get(k)!;
        const comma = `( "," space ${kv} )`;
        let res = firstOptional ? comma + (k === "*" ? "*" : "?") : kv + (k === "*" ? ` ${comma}*` : "");
        if (keys.length > 1) res += " " + this.addRule(`${prefix}${sanitize(k)}-rest`, rest(keys.slice(1), true));
        return res;
      };
      const choices = optionalKeys.map((_, i) => rest(optionalKeys.slice(i), false)).join(" | ");
      rule += requiredKeys.length > 0 ? ` ( "," space ( ${choices} ) )?` : ` ( ${choices} )?`;
    }
    return this.addRule(ruleName, `${rule} space "}"`);
  }

  private arrayRule(s: Record<string, unknown>, sub: string, ruleName: string, path: string): string {
    const tuple = Array.isArray(s.items) ? s.items : s.prefixItems;
    if (tuple !== undefined) {
      if (!Array.isArray(tuple)) throw new UnsupportedSchemaError("prefixItems", path, "must be an array");
      if (s.prefixItems !== undefined && s.items !== undefined && s.items !== false) {
        throw new UnsupportedSchemaError("items", path, "after prefixItems is supported only as false");
      }
      const parts = tuple.map((item, i) => this.visit(item as JsonSchema, `${sub}tuple-${i}`, `${path}/prefixItems/${i}`));
      return this.addRule(ruleName, `"[" space ${parts.join(' "," space ')} space "]"`);
    }
    const min = count(s.minItems, "minItems", path) ?? 0;
    const max = count(s.maxItems, "maxItems", path) ?? Infinity;
    if (max < min) throw new UnsupportedSchemaError("maxItems", path, `(${max}) is below minItems (${min}): no array conforms`);
    const items = (s.items ?? true) as JsonSchema;
    const itemRule = items === true ? this.primitive("value") : this.visit(items, `${sub}item`, `${path}/items`);
    return this.addRule(ruleName, `"[" space ${buildRepetition(itemRule, min, max, '"," space')} space "]"`);
  }

  private stringRule(s: Record<string, unknown>, ruleName: string, path: string): string {
    if (s.format !== undefined) {
      const prim = typeof s.format === "string" ? FORMATS[s.format] : undefined;
      if (prim === undefined) throw new UnsupportedSchemaError("format", path, `value ${JSON.stringify(s.format)} cannot be enforced (supported: ${Object.keys(FORMATS).join(", ")})`);
      return this.addRule(ruleName, this.primitive(prim));
    }
    const min = count(s.minLength, "minLength", path) ?? 0;
    const max = count(s.maxLength, "maxLength", path) ?? Infinity;
    if (max < min) throw new UnsupportedSchemaError("maxLength", path, `(${max}) is below minLength (${min}): no string conforms`);
    if (min === 0 && max === Infinity) return this.addRule(ruleName, this.primitive("string"));
    const char = this.primitive("char");
    return this.addRule(ruleName, `"\\"" ${buildRepetition(char, min, max)} "\\""`);
  }

  /** A JSON string that is none of `keys` (for extra properties beside named ones). */
  private notStrings(keys: readonly string[]): string {
    const char = this.primitive("char");
    type Node = Map<string, Node> & { end?: boolean };
    const root: Node = new Map();
    for (const key of keys) {
      let node = root;
      for (const c of key) {
        if (!node.has(c)) node.set(c, new Map());
        node = node.get(c)!;
      }
      node.end = true;
    }
    const visit = (node: Node): string => {
      const alts: string[] = [];
      let rejects = "";
      for (const [c, child] of node) {
        const esc = escapeClassChar(c);
        rejects += esc;
        alts.push(child.size > 0 ? `[${esc}] (${visit(child)})` : `[${esc}] ${char}+`);
      }
      // Unlike llama.cpp's, the other first characters exclude what `char` excludes, so a
      // raw control character or a lone backslash cannot slip into a key.
      if (node.size > 0) alts.push(`[^"\\\x7F\x00-\x1F${rejects}] ${char}*`);
      return alts.join(" | ");
    };
    return `["] ( ${visit(root)} )${root.end ? "" : "?"} ["]`;
  }

  private resolveRef(ref: unknown, path: string): string {
    if (typeof ref !== "string" || !ref.startsWith("#/")) {
      throw new UnsupportedSchemaError("$ref", path, `${JSON.stringify(ref)} is not a local reference (#/$defs/...)`);
    }
    const refName = "ref" + ref.slice(1).replace(/[^a-zA-Z0-9-]+/g, "-");
    if (this.rules.has(refName) || this.refsInProgress.has(ref)) return refName;
    let target: unknown = this.rootSchema;
    for (const part of ref.slice(2).split("/")) {
      const key = part.replaceAll("~1", "/").replaceAll("~0", "~");
      target = typeof target === "object" && target !== null ? (target as Record<string, unknown>)[key] : undefined;
    }
    if (target === undefined) throw new UnsupportedSchemaError("$ref", path, `${ref} points at nothing in the schema`);
    this.refsInProgress.add(ref);
    const name = this.visit(target as JsonSchema, refName, ref);
    this.refsInProgress.delete(ref);
    return name;
  }

  private primitive(name: string): string {
    const rule = PRIMITIVE_RULES[name]!;
    this.addRule(name, rule.content);
    for (const dep of rule.deps) if (!this.rules.has(dep)) this.primitive(dep);
    return name;
  }

  /** Adds `name ::= body` under a free name (llama.cpp's `_add_rule`) and returns it. */
  private addRule(name: string, body: string): string {
    const escName = name.replace(/[^a-zA-Z0-9-]+/g, "-");
    if (!this.rules.has(escName) || this.rules.get(escName) === body) {
      this.rules.set(escName, body);
      return escName;
    }
    let i = 0;
    while (this.rules.has(`${escName}${i}`) && this.rules.get(`${escName}${i}`) !== body) i++;
    this.rules.set(`${escName}${i}`, body);
    return `${escName}${i}`;
  }
}

/** llama.cpp's `build_repetition`: `item{min,max}`, with a separator between items if given. */
function buildRepetition(item: string, min: number, max: number, separator = ""): string {
  if (max === 0) return "";
  if (min === 0 && max === 1) return `${item}?`;
  if (separator === "") {
    if (min === 1 && max === Infinity) return `${item}+`;
    if (min === 0 && max === Infinity) return `${item}*`;
    return `${item}{${min},${max === Infinity ? "" : max}}`;
  }
  const result = `${item} ${buildRepetition(`(${separator} ${item})`, min === 0 ? 0 : min - 1, max === Infinity ? Infinity : max - 1)}`;
  return min === 0 ? `(${result})?` : result;
}

/** A JSON value as a GBNF literal of its compact JSON text. */
function constantRule(value: unknown): string {
  return gbnfLiteral(JSON.stringify(value));
}

/** `text` as a GBNF string literal. */
export function gbnfLiteral(text: string): string {
  return `"${text.replace(/[\\"\r\n]/g, (c) => ({ "\\": "\\\\", '"': '\\"', "\r": "\\r", "\n": "\\n" })[c]!)}"`;
}

function escapeClassChar(c: string): string {
  return /[\\\]\-^"]/.test(c) ? `\\${c}` : c === "\n" ? "\\n" : c === "\r" ? "\\r" : c;
}

function sanitize(key: string): string {
  return key.replace(/[^a-zA-Z0-9-]+/g, "-");
}

function asStringList(value: unknown, keyword: string, path: string): string[] {
  if (!Array.isArray(value) || !value.every((v) => typeof v === "string")) {
    throw new UnsupportedSchemaError(keyword, path, "must be an array of strings");
  }
  return value;
}

function count(value: unknown, keyword: string, path: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
    throw new UnsupportedSchemaError(keyword, path, `must be a non-negative integer, got ${JSON.stringify(value)}`);
  }
  return value;
}
