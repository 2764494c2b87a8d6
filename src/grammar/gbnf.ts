/**
 * GBNF (llama.cpp's grammar format, grammars/README.md) parsed into rules over bytes.
 *
 * The text speaks of Unicode code points; the parsed grammar speaks of UTF-8 bytes: every
 * character class becomes alternatives of byte-range sequences. Tokens are byte strings
 * and a character may be split across two tokens, so matching on bytes needs no
 * partial-character state anywhere else.
 *
 * Repetitions (`*`, `+`, `?`, `{m,n}`) become generated right-recursive rules, as llama.cpp
 * does, so the matcher only knows sequences, alternatives and rule references.
 */
import { GrammarError } from "./errors.ts";
import { utf8RangeSequences } from "./utf8-ranges.ts";

/** Bytes allowed at one position: a 256-bit set, as eight 32-bit words. */
export type ByteSet = Uint32Array;

/** One element of an alternative: a byte from a set, or a reference to a rule. */
export type GrammarElement =
  | { readonly kind: "bytes"; readonly set: ByteSet }
  | { readonly kind: "rule"; readonly rule: number };

/** A parsed grammar: rule i is a list of alternatives, each a sequence of elements. */
export interface Grammar {
  readonly rules: readonly (readonly (readonly GrammarElement[])[])[];
  /** Rule names, for error messages (generated rules are named `<parent>-<n>`). */
  readonly names: readonly string[];
  readonly root: number;
}

/** Most rules a grammar may grow to (repetition expands); guards against `x{1000000}`. */
const MAX_RULES = 100_000;
/** The largest count `{m,n}` may name. */
const MAX_REPEAT = 10_000;
const MAX_CODE_POINT = 0x10ffff;

type CodeRange = readonly [number, number];
type Item = { readonly kind: "chars"; readonly ranges: CodeRange[] } | { readonly kind: "rule"; readonly rule: number };

/**
 * Parses GBNF text. Throws {@link GrammarError} naming the line, column and problem for a
 * syntax error, an undefined rule, a missing `root`, or left recursion (which a stack
 * matcher cannot run).
 */
export function parseGbnf(text: string, rootName = "root"): Grammar {
  const parser = new GbnfParser(text);
  parser.parseAll();
  return parser.finish(rootName);
}

class GbnfParser {
  private pos = 0;
  private readonly ids = new Map<string, number>();
  private readonly names: string[] = [];
  private readonly defined: boolean[] = [];
  private readonly firstUse = new Map<number, number>();
  private readonly alts: Item[][][] = [];

  constructor(private readonly src: string) {}

  parseAll(): void {
    this.skipSpace(true);
    while (this.pos < this.src.length) {
      this.parseRule();
      this.skipSpace(true);
    }
  }

  finish(rootName: string): Grammar {
    for (let id = 0; id < this.names.length; id++) {
      if (!this.defined[id]) this.fail(`rule "${this.names[id]}" is used but never defined`, this.firstUse.get(id));
    }
    const root = this.ids.get(rootName);
    if (root === undefined) throw new GrammarError(`the grammar has no "${rootName}" rule`);
    const grammar = new ByteCompiler(this.names, this.alts).compile(root);
    checkNoLeftRecursion(grammar);
    return grammar;
  }

  private parseRule(): void {
    const start = this.pos;
    const name = this.parseName();
    this.skipSpace(false);
    if (!this.src.startsWith("::=", this.pos)) this.fail(`expected "::=" after rule name "${name}"`);
    this.pos += 3;
    this.skipSpace(true);
    const id = this.ruleId(name, start);
    if (this.defined[id]) this.fail(`rule "${name}" is defined twice`, start);
    this.defined[id] = true;
    this.alts[id] = this.parseAlternates(name, false);
    const c = this.src[this.pos];
    if (c === "\r" || c === "\n") return;
    if (this.pos < this.src.length) this.fail(`unexpected "${c}" at the end of rule "${name}"`);
  }

  private parseAlternates(ruleName: string, nested: boolean): Item[][] {
    const alts = [this.parseSequence(ruleName, nested)];
    while (this.src[this.pos] === "|") {
      this.pos++;
      this.skipSpace(true);
      alts.push(this.parseSequence(ruleName, nested));
    }
    return alts;
  }

  private parseSequence(ruleName: string, nested: boolean): Item[] {
    const seq: Item[] = [];
    let lastStart = -1; // where the last repeatable item begins in seq
    for (;;) {
      const c = this.src[this.pos];
      if (c === undefined) break;
      if (c === '"') {
        this.pos++;
        lastStart = seq.length;
        const chars = this.parseLiteral();
        for (const cp of chars) seq.push({ kind: "chars", ranges: [[cp, cp]] });
        // A repetition after a literal applies to the whole literal, as in llama.cpp.
        if (chars.length > 1 && "*+?{".includes(this.src[this.pos] ?? "")) {
          seq.splice(lastStart, chars.length, this.groupRule(ruleName, [seq.slice(lastStart)]));
        }
      } else if (c === "[") {
        this.pos++;
        lastStart = seq.length;
        seq.push({ kind: "chars", ranges: this.parseClass() });
      } else if (c === ".") {
        this.pos++;
        lastStart = seq.length;
        seq.push({ kind: "chars", ranges: [[0, MAX_CODE_POINT]] });
      } else if (c === "(") {
        this.pos++;
        this.skipSpace(true);
        const inner = this.parseAlternates(ruleName, true);
        if (this.src[this.pos] !== ")") this.fail('expected ")"');
        this.pos++;
        lastStart = seq.length;
        seq.push(this.groupRule(ruleName, inner));
      } else if (isNameChar(c)) {
        const at = this.pos;
        lastStart = seq.length;
        seq.push({ kind: "rule", rule: this.ruleId(this.parseName(), at) });
      } else if (c === "*" || c === "+" || c === "?" || c === "{") {
        if (lastStart < 0) this.fail(`"${c}" has nothing before it to repeat`);
        const [min, max] = this.parseRepetition();
        const [item] = seq.splice(lastStart);
        if (item) seq.push(...this.repeat(ruleName, item, min, max)); // "" repeated is still ""

        lastStart = -1;
      } else if (c === "<" || c === "!") {
        this.fail("token references (<[id]>, <text>, !<...>) are not supported");
      } else {
        break;
      }
      this.skipSpace(nested);
    }
    return seq;
  }

  private parseRepetition(): [number, number] {
    const c = this.src[this.pos++];
    if (c === "*") return [0, Infinity];
    if (c === "+") return [1, Infinity];
    if (c === "?") return [0, 1];
    this.skipSpace(true);
    const min = this.parseInt();
    this.skipSpace(true);
    let max = min;
    if (this.src[this.pos] === ",") {
      this.pos++;
      this.skipSpace(true);
      max = /[0-9]/.test(this.src[this.pos] ?? "") ? this.parseInt() : Infinity;
      this.skipSpace(true);
    }
    if (this.src[this.pos] !== "}") this.fail('expected "}" to close a repetition');
    this.pos++;
    if (max < min) this.fail(`repetition {${min},${max}} has its maximum below its minimum`);
    return [min, max];
  }

  private parseInt(): number {
    const m = /^[0-9]+/.exec(this.src.slice(this.pos, this.pos + 12));
    if (!m) this.fail("expected a number in a repetition");
    this.pos += m[0].length;
    const n = Number(m[0]);
    if (n > MAX_REPEAT) this.fail(`repetition count ${n} is over the limit of ${MAX_REPEAT}`);
    return n;
  }

  /** `item{min,max}` as items: min copies, then a chain of optional ones (or a star). */
  private repeat(ruleName: string, item: Item, min: number, max: number): Item[] {
    const out: Item[] = Array.from({ length: min }, () => item);
    if (max === Infinity) {
      const star = this.newRule(ruleName);
      this.alts[star] = [[item, { kind: "rule", rule: star }], []];
      out.push({ kind: "rule", rule: star });
      return out;
    }
    // x{0,3} is (x (x (x)?)?)?: each optional level is a rule.
    let tail: Item | undefined;
    for (let i = 0; i < max - min; i++) {
      const opt = this.newRule(ruleName);
      this.alts[opt] = [tail ? [item, tail] : [item], []];
      tail = { kind: "rule", rule: opt };
    }
    if (tail) out.push(tail);
    return out;
  }

  private groupRule(ruleName: string, alts: Item[][]): Item {
    const id = this.newRule(ruleName);
    this.alts[id] = alts;
    return { kind: "rule", rule: id };
  }

  private newRule(parent: string): number {
    if (this.names.length >= MAX_RULES) this.fail(`the grammar expands to more than ${MAX_RULES} rules`);
    const id = this.names.length;
    this.names.push(`${parent}-${id}`);
    this.defined.push(true);
    return id;
  }

  private ruleId(name: string, at: number): number {
    let id = this.ids.get(name);
    if (id === undefined) {
      id = this.names.length;
      this.ids.set(name, id);
      this.names.push(name);
      this.defined.push(false);
      this.firstUse.set(id, at);
    }
    return id;
  }

  private parseName(): string {
    const start = this.pos;
    while (isNameChar(this.src[this.pos])) this.pos++;
    if (this.pos === start) this.fail(`expected a rule name, found "${this.src[this.pos] ?? "end of text"}"`);
    return this.src.slice(start, this.pos);
  }

  private parseLiteral(): number[] {
    const out: number[] = [];
    for (;;) {
      const c = this.src[this.pos];
      if (c === undefined || c === "\n") this.fail("unterminated string literal");
      if (c === '"') {
        this.pos++;
        return out;
      }
      out.push(this.parseChar());
    }
  }

  private parseClass(): CodeRange[] {
    let negated = false;
    if (this.src[this.pos] === "^") {
      negated = true;
      this.pos++;
    }
    const ranges: [number, number][] = [];
    for (;;) {
      const c = this.src[this.pos];
      if (c === undefined) this.fail("unterminated character class");
      if (c === "]") {
        this.pos++;
        break;
      }
      const lo = this.parseChar();
      let hi = lo;
      if (this.src[this.pos] === "-" && this.src[this.pos + 1] !== "]" && this.src[this.pos + 1] !== undefined) {
        this.pos++;
        hi = this.parseChar();
        if (hi < lo) this.fail(`character range ends (U+${hi.toString(16)}) before it starts`);
      }
      ranges.push([lo, hi]);
    }
    return negated ? complement(ranges) : ranges;
  }

  /** One character of a literal or class, escapes decoded, as a code point. */
  private parseChar(): number {
    const c = this.src.codePointAt(this.pos) as number;
    if (c !== 0x5c) {
      this.pos += c > 0xffff ? 2 : 1;
      return c;
    }
    const e = this.src[this.pos + 1];
    this.pos += 2;
    const simple: Record<string, number> = { n: 10, r: 13, t: 9, "\\": 92, '"': 34, "[": 91, "]": 93, "-": 45, "^": 94 };
    if (e !== undefined && e in simple) return simple[e] as number;
    const digits = e === "x" ? 2 : e === "u" ? 4 : e === "U" ? 8 : 0;
    if (digits === 0) this.fail(`unknown escape "\\${e ?? ""}"`);
    const hex = this.src.slice(this.pos, this.pos + digits);
    if (!new RegExp(`^[0-9a-fA-F]{${digits}}$`).test(hex)) this.fail(`expected ${digits} hex digits after "\\${e}"`);
    this.pos += digits;
    const cp = parseInt(hex, 16);
    if (cp > MAX_CODE_POINT) this.fail(`code point 0x${hex} is beyond Unicode`);
    return cp;
  }

  private skipSpace(newlineOk: boolean): void {
    for (;;) {
      const c = this.src[this.pos];
      if (c === " " || c === "\t" || ((c === "\n" || c === "\r") && newlineOk)) this.pos++;
      else if (c === "#") while (this.pos < this.src.length && this.src[this.pos] !== "\n") this.pos++;
      else return;
    }
  }

  private fail(problem: string, at = this.pos): never {
    const before = this.src.slice(0, at);
    const line = before.split("\n").length;
    const column = at - before.lastIndexOf("\n");
    throw new GrammarError(`grammar line ${line}, column ${column}: ${problem}`);
  }
}

function isNameChar(c: string | undefined): c is string {
  return c !== undefined && /[a-zA-Z0-9_-]/.test(c);
}

/** The code points not in `ranges` (surrogates excluded: UTF-8 cannot hold them). */
function complement(ranges: readonly CodeRange[]): CodeRange[] {
  const sorted = [...ranges, [0xd800, 0xdfff] as CodeRange].sort((a, b) => a[0] - b[0]);
  const out: CodeRange[] = [];
  let next = 0;
  for (const [lo, hi] of sorted) {
    if (lo > next) out.push([next, lo - 1]);
    next = Math.max(next, hi + 1);
  }
  if (next <= MAX_CODE_POINT) out.push([next, MAX_CODE_POINT]);
  return out;
}

/** Turns code-point items into byte elements, one helper rule per multi-byte class. */
class ByteCompiler {
  private readonly names: string[];
  private readonly rules: GrammarElement[][][] = [];
  private readonly classRules = new Map<string, number>();

  constructor(names: readonly string[], private readonly alts: readonly Item[][][]) {
    this.names = [...names];
  }

  compile(root: number): Grammar {
    for (let id = 0; id < this.alts.length; id++) {
      this.rules[id] = (this.alts[id] ?? []).map((seq) => seq.flatMap((item) => this.element(item)));
    }
    return { rules: this.rules, names: this.names, root };
  }

  private element(item: Item): GrammarElement[] {
    if (item.kind === "rule") return [item];
    const sequences = utf8RangeSequences(item.ranges);
    if (sequences.length === 1 && sequences[0]!.length === 1) return [{ kind: "bytes", set: byteSet(sequences[0]![0]!) }];
    const key = JSON.stringify(item.ranges);
    let id = this.classRules.get(key);
    if (id === undefined) {
      id = this.names.length;
      this.names.push(`class-${id}`);
      this.rules[id] = sequences.map((seq) => seq.map((r) => ({ kind: "bytes", set: byteSet(r) }) as GrammarElement));
      this.classRules.set(key, id);
    }
    return [{ kind: "rule", rule: id }];
  }
}

function byteSet(ranges: readonly (readonly [number, number])[]): ByteSet {
  const set = new Uint32Array(8);
  for (const [lo, hi] of ranges) for (let b = lo; b <= hi; b++) set[b >> 5]! |= 1 << (b & 31);
  return set;
}

/**
 * Refuses a rule that can reach itself without consuming a byte (`a ::= a "x"`, or
 * `b ::= c* b` with `c` able to match nothing): a stack matcher would expand it forever.
 */
function checkNoLeftRecursion(g: Grammar): void {
  const nullable = nullableRules(g);
  const firstRefs = g.rules.map((alts) => {
    const refs = new Set<number>();
    for (const seq of alts) {
      for (const el of seq) {
        if (el.kind === "bytes") break;
        refs.add(el.rule);
        if (!nullable[el.rule]) break;
      }
    }
    return refs;
  });
  const state = new Uint8Array(g.rules.length); // 0 unseen, 1 on the path, 2 done
  const visit = (id: number): void => {
    state[id] = 1;
    for (const next of firstRefs[id]!) {
      if (state[next] === 1) throw new GrammarError(`rule "${g.names[next]}" is left-recursive: it can reach itself without matching a character`);
      if (state[next] === 0) visit(next);
    }
    state[id] = 2;
  };
  for (let id = 0; id < g.rules.length; id++) if (state[id] === 0) visit(id);
}

function nullableRules(g: Grammar): boolean[] {
  const nullable = g.rules.map(() => false);
  for (let changed = true; changed; ) {
    changed = false;
    g.rules.forEach((alts, id) => {
      if (nullable[id]) return;
      if (alts.some((seq) => seq.every((el) => el.kind === "rule" && nullable[el.rule]))) {
        nullable[id] = true;
        changed = true;
      }
    });
  }
  return nullable;
}
