/**
 * WGSL sources and the small preprocessor that makes variants of them.
 *
 * The `.wgsl` files live in `shaders/` (one kernel family per file, plus shared helper
 * files such as `quant.wgsl`). `node scripts/embed-shaders.mjs` copies their text into
 * `shaders.generated.ts`, so nothing reads or fetches shader files at run time; a Deno
 * test fails when that module is stale.
 *
 * Preprocessing, line by line (directives must start their line, after optional spaces):
 * - `#include "file.wgsl"` inserts another embedded file (once per name; later includes of
 *   the same file are dropped, so helpers may include each other safely).
 * - `#if EXPR` / `#elif EXPR` / `#else` / `#endif`, nestable. EXPR is one or more names
 *   joined by `||`, or by `&&` (not both), each optionally negated with `!`. A name is true
 *   when its define is `true` or a non-zero number or non-empty string.
 * - `{{NAME}}` anywhere in an active line is replaced by the define's value; an unknown
 *   name is an error, so a typo cannot silently produce a different kernel.
 *
 * ```ts
 * const code = preprocessShader("matvec.wgsl", { Q4_0: true, WG: 128, ROWS: 4 });
 * ```
 */
import { GpuError } from "../errors.ts";
import { SHADER_SOURCES } from "./shaders.generated.ts";

/** Values a shader variant is built with. */
export type ShaderDefines = Readonly<Record<string, string | number | boolean>>;

/** Returns the preprocessed text of an embedded shader file. */
export function preprocessShader(
  file: string,
  defines: ShaderDefines,
  sources: Readonly<Record<string, string>> = SHADER_SOURCES,
): string {
  const out: string[] = [];
  expand(file, defines, sources, out, new Set());
  return out.join("\n");
}

interface Frame {
  /** Lines of this frame are emitted. */
  active: boolean;
  /** Some branch of this #if chain was already taken. */
  taken: boolean;
  /** The enclosing frame is active. */
  parentActive: boolean;
}

function expand(
  file: string,
  defines: ShaderDefines,
  sources: Readonly<Record<string, string>>,
  out: string[],
  included: Set<string>,
): void {
  const text = sources[file];
  if (text === undefined) throw shaderError(file, 0, `no embedded shader named "${file}"`);
  included.add(file);
  const stack: Frame[] = [];
  const lines = text.split("\n");
  lines.forEach((line, index) => {
    const lineNo = index + 1;
    const active = stack.length === 0 || stack[stack.length - 1].active;
    const directive = /^\s*#(include|if|elif|else|endif)\b\s*(.*)$/.exec(line);
    if (!directive) {
      if (active) out.push(substitute(line, defines, file, lineNo));
      return;
    }
    const [, name, rest] = directive;
    switch (name) {
      case "include": {
        if (!active) return;
        const target = /^"([^"]+)"\s*$/.exec(rest);
        if (!target) throw shaderError(file, lineNo, `bad #include ${rest}`);
        if (!included.has(target[1])) expand(target[1], defines, sources, out, included);
        return;
      }
      case "if": {
        const value = active && evaluate(rest, defines, file, lineNo);
        stack.push({ active: value, taken: value, parentActive: active });
        return;
      }
      case "elif":
      case "else": {
        const frame = stack[stack.length - 1];
        if (!frame) throw shaderError(file, lineNo, `#${name} without #if`);
        const value = frame.parentActive && !frame.taken && (name === "else" || evaluate(rest, defines, file, lineNo));
        frame.active = value;
        frame.taken ||= value;
        return;
      }
      case "endif":
        if (!stack.pop()) throw shaderError(file, lineNo, "#endif without #if");
        return;
    }
  });
  if (stack.length > 0) throw shaderError(file, lines.length, "unterminated #if");
}

function evaluate(expr: string, defines: ShaderDefines, file: string, line: number): boolean {
  const trimmed = expr.trim();
  if (trimmed === "") throw shaderError(file, line, "#if needs a condition");
  if (trimmed.includes("||") && trimmed.includes("&&")) {
    throw shaderError(file, line, `mixing || and && is not supported: ${trimmed}`);
  }
  const isOr = trimmed.includes("||");
  const terms = trimmed.split(isOr ? "||" : "&&").map((term) => {
    const m = /^\s*(!?)\s*([A-Za-z_][A-Za-z0-9_]*)\s*$/.exec(term);
    if (!m) throw shaderError(file, line, `bad #if term "${term.trim()}"`);
    const value = truthy(defines[m[2]]);
    return m[1] === "!" ? !value : value;
  });
  return isOr ? terms.some(Boolean) : terms.every(Boolean);
}

function truthy(value: string | number | boolean | undefined): boolean {
  return value !== undefined && value !== false && value !== 0 && value !== "";
}

function substitute(line: string, defines: ShaderDefines, file: string, lineNo: number): string {
  return line.replace(/\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g, (_, name: string) => {
    const value = defines[name];
    if (value === undefined) throw shaderError(file, lineNo, `{{${name}}} has no define`);
    return String(value);
  });
}

function shaderError(file: string, line: number, message: string): GpuError {
  return new GpuError("SHADER_COMPILE", `${file}:${line}: ${message}`, { label: file });
}
