/**
 * Pre-tokenizer splits worked out by hand from each pattern (see the comments), including
 * the `\s+(?!\S)` rule that leaves the last space of a run to the next word.
 */
import { describe, expect, it } from "vitest";
import { preTokenize, preTokenizerByName } from "../../../src/tokenizer/pretokenize.ts";
import { codePointsOf, stringFromCodePoints } from "../../../src/tokenizer/unicode.ts";

function split(pre: string, text: string): string[] {
  const cpts = codePointsOf(text);
  const out: string[] = [];
  let pos = 0;
  for (const n of preTokenize(preTokenizerByName(pre), cpts)) {
    out.push(stringFromCodePoints(cpts, pos, pos + n));
    pos += n;
  }
  return out;
}

const SAMPLE = "Hello  world 12345\n\n x";

describe("pre-tokenizers", () => {
  it("gpt-2: ` ?\\p{N}+` keeps digits together with their space", () => {
    // Two spaces before "world": the first stands alone, the second joins the word.
    expect(split("gpt-2", SAMPLE)).toEqual(["Hello", " ", " world", " 12345", "\n\n", " x"]);
  });

  it("llama3: digits in threes, a lone space before digits, newlines apart", () => {
    expect(split("llama3", SAMPLE)).toEqual(["Hello", " ", " world", " ", "123", "45", "\n\n", " x"]);
  });

  it("qwen2: every digit alone", () => {
    expect(split("qwen2", SAMPLE)).toEqual(["Hello", " ", " world", " ", "1", "2", "3", "4", "5", "\n\n", " x"]);
  });

  it("default: GPT-2's split, then digit runs cut out and into threes", () => {
    expect(split("default", SAMPLE)).toEqual(["Hello", " ", " world", " ", "123", "45", "\n\n", " x"]);
    // The first pattern isolates punctuation runs before GPT-2's pattern sees them.
    expect(split("default", "a!?b $x")).toEqual(["a", "!?", "b", " ", "$", "x"]);
  });

  it("smollm: digits cut out first, then GPT-2's pattern on the rest", () => {
    expect(split("smollm", SAMPLE)).toEqual(["Hello", " ", " world", " ", "1", "2", "3", "4", "5", "\n\n", " x"]);
  });

  it("contractions: case-sensitive in GPT-2's pattern, case-insensitive in Llama 3's", () => {
    expect(split("gpt-2", "I'M it's")).toEqual(["I", "'", "M", " it", "'s"]);
    expect(split("llama3", "I'M it's")).toEqual(["I", "'M", " it", "'s"]);
  });

  it("llama3: punctuation takes following newlines; letters take one leading non-letter", () => {
    expect(split("llama3", "end.\n\nNext (x)")).toEqual(["end", ".\n\n", "Next", " (", "x", ")"]);
    expect(split("llama3", "\tTab_name")).toEqual(["\tTab", "_name"]);
  });

  it("treats non-ASCII letters, digits and spaces by their Unicode class", () => {
    // U+00A0 is whitespace, "²" a number, "é" a letter, "灯塔" letters.
    expect(split("gpt-2", "café\u00a0²灯塔")).toEqual(["café", "\u00a0", "²", "灯塔"]);
    expect(split("llama3", "a\u3000\u3000b")).toEqual(["a", "\u3000", "\u3000b"]);
  });
});
