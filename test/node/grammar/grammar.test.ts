/**
 * The GBNF parser, matcher and token masks against independently derived expectations:
 * acceptance of every short string over an alphabet against the equivalent JavaScript
 * RegExp, masks against a brute-force check of each token, and random walks of JSON-schema
 * grammars through JSON.parse plus a conformance check written from the schema's meaning.
 */
import { describe, expect, it } from "vitest";
import {
  GrammarError,
  type GrammarVocabulary,
  jsonSchemaToGbnf,
  TokenGrammar,
  UnsupportedSchemaError,
} from "../../../src/grammar/index.ts";

const enc = new TextEncoder();

/** A vocabulary of the given byte strings, plus one end token (the last id). */
function vocabOf(pieces: readonly (string | Uint8Array)[]): GrammarVocabulary {
  const tokenBytes = pieces.map((p) => (typeof p === "string" ? enc.encode(p) : p));
  return { size: pieces.length + 1, tokenBytes: [...tokenBytes, undefined], eogIds: [pieces.length] };
}

/** Whether `grammar` matches all of `text` (fed as raw bytes) and may end there. */
function accepts(grammar: TokenGrammar, text: string): boolean {
  const m = grammar.matcher();
  return m.acceptBytes(enc.encode(text)) && m.canEnd;
}

function* stringsOver(alphabet: readonly string[], maxLength: number): Generator<string> {
  let layer = [""];
  yield "";
  for (let n = 1; n <= maxLength; n++) {
    layer = layer.flatMap((s) => alphabet.map((c) => s + c));
    yield* layer;
  }
}

const CASES: { gbnf: string; regex: RegExp; alphabet: string[] }[] = [
  { gbnf: 'root ::= "ab" | "a" [b-d]* "e"', regex: /^(?:ab|a[b-d]*e)$/, alphabet: ["a", "b", "c", "d", "e"] },
  { gbnf: "root ::= x{2,3} y?\nx ::= [ab]\ny ::= \"c\"+", regex: /^[ab]{2,3}(?:c+)?$/, alphabet: ["a", "b", "c"] },
  { gbnf: "root ::= [^a\\n]{1,2} | \"\\n\"", regex: /^(?:[^a\n]{1,2}|\n)$/u, alphabet: ["a", "b", "\n", "é", "日"] },
  { gbnf: "root ::= .{3}", regex: /^.{3}$/su, alphabet: ["x", "é", "😀"] },
  { gbnf: "root ::= a b\na ::= \"x\"?\nb ::= \"y\"{0,2} # comment\n", regex: /^x?y{0,2}$/, alphabet: ["x", "y"] },
];

describe("GBNF matcher", () => {
  for (const { gbnf, regex, alphabet } of CASES) {
    it(`matches exactly what ${regex} matches (${JSON.stringify(gbnf)})`, () => {
      const grammar = TokenGrammar.fromGbnf(gbnf, vocabOf(["x"]));
      let checked = 0;
      for (const s of stringsOver(alphabet, 5)) {
        expect(accepts(grammar, s), JSON.stringify(s)).toBe(regex.test(s));
        checked++;
      }
      expect(checked).toBeGreaterThan(30);
    });
  }

  it("handles recursion (balanced parentheses)", () => {
    const grammar = TokenGrammar.fromGbnf('root ::= ("(" root ")")* "."', vocabOf(["x"]));
    // A direct recursive-descent reading of the same rule: it returns where a root ends, or -1.
    const parseRoot = (s: string, at: number): number => {
      let i = at;
      while (s[i] === "(") {
        i = parseRoot(s, i + 1);
        if (i < 0 || s[i] !== ")") return -1;
        i++;
      }
      return s[i] === "." ? i + 1 : -1;
    };
    const balancedDot = (s: string): boolean => parseRoot(s, 0) === s.length;
    for (const s of stringsOver(["(", ")", "."], 8)) expect(accepts(grammar, s), s).toBe(balancedDot(s));
  });

  it("masks exactly the tokens a brute-force check accepts, UTF-8 split across tokens included", () => {
    const pieces: (string | Uint8Array)[] = ["a", "b", "ab", "ba", "é", Uint8Array.of(0xc3), Uint8Array.of(0xa9), "日", "\"", "aé", "x"];
    const vocab = vocabOf(pieces);
    const grammar = TokenGrammar.fromGbnf('root ::= ("a" | "é" | "b")* "x"', vocab);
    const words = Math.ceil(vocab.size / 32);
    const bits = new Uint32Array(words);
    // Walk a few prefixes and compare the mask with each token tried on a fresh matcher.
    for (const prefix of [[], [0], [5], [5, 6], [4, 2], [10]]) {
      const m = grammar.matcher();
      for (const id of prefix) expect(m.acceptToken(id)).toBe(true);
      m.fillNextTokenMask(bits);
      for (let id = 0; id < vocab.size; id++) {
        const probe = grammar.matcher();
        const ok = prefix.every((p) => probe.acceptToken(p)) && probe.acceptToken(id);
        expect(((bits[id >> 5]! >>> (id & 31)) & 1) === 1, `token ${id} after ${prefix}`).toBe(ok);
      }
    }
    // The lone lead byte 0xC3 is allowed only because a continuation token can finish é.
    const m = grammar.matcher();
    expect(m.acceptToken(5)).toBe(true);
    m.fillNextTokenMask(bits);
    expect((bits[0]! >>> 6) & 1).toBe(1);
    expect((bits[0]! >>> 0) & 1).toBe(0);
  });

  it("allows the end token only where the grammar may end, and terminates after", () => {
    const vocab = vocabOf(["a", "b"]);
    const grammar = TokenGrammar.fromGbnf('root ::= "a" "b"?', vocab);
    const m = grammar.matcher();
    expect(m.acceptToken(2)).toBe(false);
    expect(m.acceptToken(0)).toBe(true);
    expect(m.canEnd).toBe(true);
    expect(m.isTerminated()).toBe(false);
    expect(m.acceptToken(1)).toBe(true);
    expect(m.isTerminated()).toBe(true);
    expect(m.acceptToken(2)).toBe(true);
  });

  it("refuses bad grammars with a typed error naming the problem", () => {
    const vocab = vocabOf(["a"]);
    expect(() => TokenGrammar.fromGbnf("root ::= foo", vocab)).toThrow(/rule "foo" is used but never defined/);
    expect(() => TokenGrammar.fromGbnf('start ::= "a"', vocab)).toThrow(/no "root" rule/);
    expect(() => TokenGrammar.fromGbnf('root ::= root "a" | "b"', vocab)).toThrow(/left-recursive/);
    expect(() => TokenGrammar.fromGbnf('root ::= "a', vocab)).toThrow(GrammarError);
    expect(() => TokenGrammar.fromGbnf("root ::= [a-", vocab)).toThrow(/line 1, column/);
  });
});

/** A small vocabulary able to spell the JSON of the schema below, in pieces of several sizes. */
function jsonVocab(): GrammarVocabulary {
  const pieces = new Set<string>();
  for (const c of ' {}[]",:\n\t0123456789-.eE+abcdefghijklmnopqrstuvwxyzABC\\/é日') pieces.add(c);
  for (const w of ['{"', '":', '",', '"name', "name", "tags", "kind", "level", "cat", "dog", '"}', "], ", "true", "null", "  ", "é日"]) pieces.add(w);
  return vocabOf([...pieces, Uint8Array.of(0xe6), Uint8Array.of(0x97, 0xa5)]);
}

const SCHEMA = {
  type: "object",
  properties: {
    name: { type: "string", minLength: 1, maxLength: 6 },
    kind: { enum: ["cat", "dog"] },
    tags: { type: "array", items: { type: "object", properties: { level: { type: "integer" } }, required: ["level"], additionalProperties: false }, maxItems: 2 },
    ok: { type: "boolean" },
  },
  required: ["name", "kind", "tags"],
  additionalProperties: false,
};

/** Conformance to SCHEMA, written from the schema's meaning (not from the grammar). */
function conforms(v: unknown): boolean {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return false;
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o);
  if (!keys.every((k) => ["name", "kind", "tags", "ok"].includes(k))) return false;
  if (typeof o.name !== "string" || [...o.name].length < 1 || [...o.name].length > 6) return false;
  if (o.kind !== "cat" && o.kind !== "dog") return false;
  if (!Array.isArray(o.tags) || o.tags.length > 2) return false;
  for (const t of o.tags) {
    if (typeof t !== "object" || t === null || Object.keys(t).join() !== "level" || !Number.isInteger((t as { level: unknown }).level)) return false;
  }
  return o.ok === undefined || typeof o.ok === "boolean";
}

describe("jsonSchemaToGbnf", () => {
  it("gives output that parses and conforms on random walks of the mask", () => {
    const vocab = jsonVocab();
    const grammar = TokenGrammar.fromGbnf(jsonSchemaToGbnf(SCHEMA), vocab);
    const bits = new Uint32Array(grammar.maskWords);
    let seed = 7;
    const random = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    let finished = 0;
    for (let walk = 0; walk < 60; walk++) {
      const m = grammar.matcher();
      const bytes: number[] = [];
      for (let step = 0; step < 400 && !m.isTerminated(); step++) {
        m.fillNextTokenMask(bits);
        const allowed = Array.from({ length: vocab.size }, (_, i) => i).filter((i) => (bits[i >> 5]! >>> (i & 31)) & 1);
        expect(allowed.length, `dead end after ${new TextDecoder().decode(Uint8Array.from(bytes))}`).toBeGreaterThan(0);
        // Prefer ending once allowed, so walks finish; otherwise a uniform pick.
        const end = vocab.eogIds[0]!;
        const id = allowed.includes(end) && random() < 0.5 ? end : allowed[Math.floor(random() * allowed.length)]!;
        expect(m.acceptToken(id)).toBe(true);
        if (id !== end) bytes.push(...vocab.tokenBytes[id]!);
      }
      if (!m.isTerminated()) continue;
      finished++;
      const text = new TextDecoder("utf-8", { fatal: true }).decode(Uint8Array.from(bytes));
      expect(conforms(JSON.parse(text)), text).toBe(true);
    }
    expect(finished).toBeGreaterThan(20);
  });

  it("accepts conforming documents and refuses non-conforming ones", () => {
    const grammar = TokenGrammar.fromGbnf(jsonSchemaToGbnf(SCHEMA), jsonVocab());
    const good = ['{"name":"é日","kind":"cat","tags":[]}', '{ "name": "a", "kind": "dog", "tags": [{"level": -12}], "ok": true }'];
    const bad = ['{"name":"","kind":"cat","tags":[]}', '{"name":"abcdefg","kind":"cat","tags":[]}', '{"name":"a","kind":"cow","tags":[]}', '{"name":"a","kind":"cat"}', '{"name":"a","kind":"cat","tags":[],"x":1}', '{"name":"a","kind":"cat","tags":[{},{},{}]}'];
    for (const s of good) expect(accepts(grammar, s), s).toBe(true);
    for (const s of bad) expect(accepts(grammar, s), s).toBe(false);
  });

  it("makes {type: object} any JSON object, as llama.cpp does", () => {
    const grammar = TokenGrammar.fromGbnf(jsonSchemaToGbnf({ type: "object" }), jsonVocab());
    expect(accepts(grammar, '{"a": [1, {"b": null}], "c": "d"}')).toBe(true);
    expect(accepts(grammar, "[1]")).toBe(false);
  });

  it("refuses keywords it cannot enforce, naming them", () => {
    for (const [schema, keyword] of [
      [{ type: "string", pattern: "^a$" }, "pattern"],
      [{ type: "integer", minimum: 3 }, "minimum"],
      [{ type: "object", properties: { a: { not: {} } } }, "not"],
      [{ type: "string", format: "email" }, "format"],
    ] as const) {
      let error: unknown;
      try {
        jsonSchemaToGbnf(schema);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(UnsupportedSchemaError);
      expect((error as UnsupportedSchemaError).keyword).toBe(keyword);
      expect((error as Error).message).toContain(`"${keyword}"`);
    }
  });
});
