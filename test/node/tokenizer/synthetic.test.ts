/**
 * Synthetic vocabularies: exactly the size asked for, internally consistent (every merge
 * joins two tokens into a third), deterministic, and splitting real text into more than
 * single bytes. llama.cpp's acceptance is checked in llamacpp-tokenizer.test.ts.
 */
import { describe, expect, it } from "vitest";
import type { MetaEntry } from "../../../src/gguf/writer.ts";
import { MAX_MERGES, syntheticTokenizerMetadata } from "../../../src/tokenizer/synthetic.ts";
import { tokenizerFromMetadata } from "../../../src/tokenizer/tokenizer.ts";
import { TokenType } from "../../../src/tokenizer/vocab.ts";

function value(entries: readonly [string, MetaEntry][], key: string): unknown {
  return entries.find(([k]) => k === key)?.[1].value;
}

const SIZES = [320, 512, 1000, 4096, 32000, 151936];

describe("syntheticTokenizerMetadata", () => {
  it.each(SIZES)("gpt2 kind has exactly %i tokens and consistent merges", (size) => {
    const entries = syntheticTokenizerMetadata("gpt2", size, { pre: "qwen2" });
    const tokens = value(entries, "tokenizer.ggml.tokens") as string[];
    const types = value(entries, "tokenizer.ggml.token_type") as number[];
    const merges = value(entries, "tokenizer.ggml.merges") as string[];
    expect(tokens).toHaveLength(size);
    expect(types).toHaveLength(size);
    expect(new Set(tokens).size).toBe(size);
    expect(merges.length).toBeGreaterThan(Math.min(50, size - 300));
    expect(merges.length).toBeLessThanOrEqual(MAX_MERGES);
    const known = new Set(tokens);
    for (const m of merges) {
      const [left, right] = m.split(" ") as [string, string];
      expect(known.has(left) && known.has(right) && known.has(left + right)).toBe(true);
    }
    for (const special of ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) {
      expect(types[tokens.indexOf(special)]).toBe(TokenType.Control);
    }
  });

  it.each(SIZES)("llama kind has exactly %i tokens with byte fallback", (size) => {
    const entries = syntheticTokenizerMetadata("llama", size);
    const tokens = value(entries, "tokenizer.ggml.tokens") as string[];
    const types = value(entries, "tokenizer.ggml.token_type") as number[];
    const scores = value(entries, "tokenizer.ggml.scores") as number[];
    expect(tokens).toHaveLength(size);
    expect(types).toHaveLength(size);
    expect(scores).toHaveLength(size);
    expect(new Set(tokens).size).toBe(size);
    expect(tokens.slice(0, 3)).toEqual(["<unk>", "<s>", "</s>"]);
    expect(tokens[3 + 0x0a]).toBe("<0x0A>");
    expect(types.filter((t) => t === TokenType.Byte)).toHaveLength(256);
  });

  it("is deterministic", () => {
    expect(syntheticTokenizerMetadata("gpt2", 1000, { pre: "smollm" })).toEqual(syntheticTokenizerMetadata("gpt2", 1000, { pre: "smollm" }));
    expect(syntheticTokenizerMetadata("llama", 1000)).toEqual(syntheticTokenizerMetadata("llama", 1000));
  });

  it("learns merges that split English into words, not bytes", () => {
    for (const kind of ["gpt2", "llama"] as const) {
      const t = tokenizerFromMetadata(Object.fromEntries(syntheticTokenizerMetadata(kind, 4096)));
      const text = "The lighthouse keeper wrote in her log every evening.";
      const ids = t.encode(text, { addSpecial: false });
      expect(ids.length).toBeLessThan(text.length / 3);
    }
  });

  it("writes gpt-2 for the pre-tokenizer name gpt2, which llama.cpp does not know", () => {
    expect(value(syntheticTokenizerMetadata("gpt2", 512, { pre: "gpt2" }), "tokenizer.ggml.pre")).toBe("gpt-2");
  });

  it("refuses sizes too small to hold bytes and specials", () => {
    expect(() => syntheticTokenizerMetadata("llama", 100)).toThrow(/vocabSize/);
  });
});
