/**
 * A small argv parser shared by the CLI commands: typed flags declared once, from which
 * both the parse result's type and the `--help` text are derived.
 *
 * Flags are camelCase keys in the spec and kebab-case on the command line
 * (`maxTokens` ↔ `--max-tokens`). Values come as `--flag value` or `--flag=value`;
 * booleans as `--flag`, `--no-flag` or `--flag=true|false`; `strings` flags repeat.
 * Anything unknown or malformed is an `InvalidArgumentError` naming the flag.
 */
import { InvalidArgumentError } from "../errors.ts";

interface FlagBase {
  readonly description: string;
  /** One-letter alias, without the dash: `m` for `-m`. */
  readonly short?: string;
}

/** A string flag. */
export interface StringFlag extends FlagBase {
  readonly type: "string";
  readonly default?: string;
  readonly required?: boolean;
  /** Shown in help as `--model <placeholder>`. */
  readonly placeholder?: string;
}

/** A number flag, optionally whole and bounded. */
export interface NumberFlag extends FlagBase {
  readonly type: "number";
  readonly default?: number;
  readonly required?: boolean;
  readonly integer?: boolean;
  readonly min?: number;
  readonly max?: number;
  readonly placeholder?: string;
}

/** A boolean switch; `false` unless given. */
export interface BooleanFlag extends FlagBase {
  readonly type: "boolean";
}

/** A string flag that may repeat; `[]` unless given. */
export interface StringsFlag extends FlagBase {
  readonly type: "strings";
  readonly placeholder?: string;
}

/** Any flag of a {@link CommandSpec}. */
export type FlagSpec = StringFlag | NumberFlag | BooleanFlag | StringsFlag;

/** A positional argument, for help text and count checks. */
export interface PositionalSpec {
  readonly name: string;
  readonly description: string;
  readonly required?: boolean;
}

/** A command's arguments. */
export interface CommandSpec<F extends Readonly<Record<string, FlagSpec>>> {
  readonly name: string;
  readonly summary: string;
  readonly flags: F;
  readonly positionals?: readonly PositionalSpec[];
}

type Present = { readonly default: unknown } | { readonly required: true };

/** The parsed type of one flag: optional flags without a default may be `undefined`. */
export type FlagValue<S extends FlagSpec> = S extends BooleanFlag ? boolean
  : S extends StringsFlag ? string[]
  : S extends NumberFlag ? S extends Present ? number
    : number | undefined
  : S extends Present ? string
  : string | undefined;

/** The parsed flags of a spec. */
export type ParsedFlags<F extends Readonly<Record<string, FlagSpec>>> = { -readonly [K in keyof F]: FlagValue<F[K]> };

/** `--help` was asked for (`text` is the help), or the parsed arguments. */
export type ParseResult<F extends Readonly<Record<string, FlagSpec>>> =
  | { readonly help: true; readonly text: string }
  | { readonly help: false; readonly flags: ParsedFlags<F>; readonly positionals: string[] };

/** `maxTokens` → `max-tokens`. */
export function kebab(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

type FlagValueAny = string | number | boolean | string[] | undefined;

/**
 * Parses `args` (the words after the command name) against `spec`.
 * @throws InvalidArgumentError for unknown flags, missing or malformed values, missing
 *   required flags, or too many / too few positionals.
 */
export function parseArgs<const F extends Readonly<Record<string, FlagSpec>>>(
  args: readonly string[],
  spec: CommandSpec<F>,
): ParseResult<F> {
  const byLong = new Map<string, string>();
  const byShort = new Map<string, string>();
  for (const [key, flag] of Object.entries(spec.flags)) {
    byLong.set(kebab(key), key);
    if (flag.short !== undefined) byShort.set(flag.short, key);
  }
  const values = new Map<string, FlagValueAny>();
  const positionals: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] ?? "";
    if (arg === "--") {
      positionals.push(...args.slice(i + 1));
      break;
    }
    if (arg === "--help" || arg === "-h") return { help: true, text: helpText(spec) };
    const long = /^--([^=]+)(?:=(.*))?$/s.exec(arg);
    const short = long ? null : /^-([A-Za-z])$/.exec(arg);
    if (!long && !short) {
      positionals.push(arg);
      continue;
    }
    let name = long ? (long[1] ?? "") : (short?.[1] ?? "");
    let key = long ? byLong.get(name) : byShort.get(name);
    const inline = long?.[2];
    let negated = false;
    if (key === undefined && long && name.startsWith("no-") && inline === undefined) {
      const positive = byLong.get(name.slice(3));
      if (positive !== undefined && spec.flags[positive]?.type === "boolean") {
        key = positive;
        negated = true;
        name = name.slice(3);
      }
    }
    const flag = key === undefined ? undefined : spec.flags[key];
    if (key === undefined || flag === undefined) {
      throw new InvalidArgumentError(arg, `unknown option for "${spec.name}"; run it with --help for the list`);
    }
    const label = `--${kebab(key)}`;
    if (flag.type === "boolean") {
      values.set(key, negated ? false : inline === undefined ? true : parseBoolean(label, inline));
      continue;
    }
    let raw = inline;
    if (raw === undefined) {
      raw = args[i + 1];
      if (raw === undefined) throw new InvalidArgumentError(label, "needs a value");
      i++;
    }
    if (flag.type === "strings") {
      const prior = values.get(key);
      values.set(key, [...(Array.isArray(prior) ? prior : []), raw]);
    } else if (flag.type === "number") {
      values.set(key, parseNumber(label, flag, raw));
    } else {
      values.set(key, raw);
    }
  }
  checkPositionals(spec, positionals);
  return { help: false, flags: finish(spec, values), positionals };
}

function parseBoolean(label: string, raw: string): boolean {
  const v = raw.toLowerCase();
  if (["true", "1", "yes"].includes(v)) return true;
  if (["false", "0", "no"].includes(v)) return false;
  throw new InvalidArgumentError(label, `expected true or false, got "${raw}"`);
}

function parseNumber(label: string, flag: NumberFlag, raw: string): number {
  const n = raw.trim() === "" ? Number.NaN : Number(raw);
  if (!Number.isFinite(n)) throw new InvalidArgumentError(label, `expected a number, got "${raw}"`);
  if (flag.integer && !Number.isSafeInteger(n)) {
    throw new InvalidArgumentError(label, `expected a whole number, got "${raw}"`);
  }
  if (flag.min !== undefined && n < flag.min) {
    throw new InvalidArgumentError(label, `must be at least ${flag.min}, got ${n}`);
  }
  if (flag.max !== undefined && n > flag.max) {
    throw new InvalidArgumentError(label, `must be at most ${flag.max}, got ${n}`);
  }
  return n;
}

function checkPositionals<F extends Readonly<Record<string, FlagSpec>>>(
  spec: CommandSpec<F>,
  given: readonly string[],
): void {
  const declared = spec.positionals ?? [];
  if (given.length > declared.length) {
    const extra = given[declared.length];
    throw new InvalidArgumentError(
      String(extra),
      declared.length === 0
        ? `"${spec.name}" takes no positional arguments`
        : `unexpected argument; "${spec.name}" takes at most ${declared.length}`,
    );
  }
  declared.forEach((p, i) => {
    if (p.required && given[i] === undefined) throw new InvalidArgumentError(`<${p.name}>`, "is required");
  });
}

function finish<F extends Readonly<Record<string, FlagSpec>>>(
  spec: CommandSpec<F>,
  values: Map<string, FlagValueAny>,
): ParsedFlags<F> {
  const out: Record<string, FlagValueAny> = {};
  for (const [key, flag] of Object.entries(spec.flags)) {
    let v = values.get(key);
    if (v === undefined) {
      if (flag.type === "boolean") v = false;
      else if (flag.type === "strings") v = [];
      else if (flag.default !== undefined) v = flag.default;
      else if (flag.required) throw new InvalidArgumentError(`--${kebab(key)}`, "is required");
    }
    out[key] = v;
  }
  // The loop above gave every key the value its FlagValue type promises.
  return out as ParsedFlags<F>;
}

/** The `--help` text of a command. */
export function helpText<F extends Readonly<Record<string, FlagSpec>>>(spec: CommandSpec<F>): string {
  const positionals = (spec.positionals ?? []).map((p) => (p.required ? `<${p.name}>` : `[${p.name}]`));
  const lines = [`usage: deno task cli ${[spec.name, "[options]", ...positionals].join(" ")}`, "", spec.summary];
  if (spec.positionals?.length) {
    lines.push("", "arguments:");
    for (const p of spec.positionals) lines.push(`  ${p.name.padEnd(24)} ${p.description}`);
  }
  lines.push("", "options:");
  const rows: [string, string][] = Object.entries(spec.flags).map(([key, flag]) => {
    const alias = flag.short ? `-${flag.short}, ` : "    ";
    const value = flag.type === "boolean" ? "" : ` <${flag.placeholder ?? flag.type.replace(/s$/, "")}>`;
    let description = flag.description;
    // A description that already states its default ("(default: the model's)") keeps its
    // wording; adding the field's value too would show the default twice.
    const statesDefault = /\(default\b/.test(description);
    if ((flag.type === "string" || flag.type === "number") && flag.default !== undefined && !statesDefault) {
      description += ` (default: ${flag.default})`;
    }
    if ((flag.type === "string" || flag.type === "number") && flag.required) description += " (required)";
    if (flag.type === "strings") description += " (repeatable)";
    return [`${alias}--${kebab(key)}${value}`, description];
  });
  rows.push(["-h, --help", "show this help"]);
  const width = Math.max(...rows.map(([left]) => left.length)) + 2;
  for (const [left, right] of rows) lines.push(`  ${left.padEnd(width)}${right}`);
  return lines.join("\n");
}
