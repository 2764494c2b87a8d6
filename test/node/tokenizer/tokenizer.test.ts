/**
 * Tokenizer behavior checked on hand-built vocabularies, where the expected ids follow
 * from the vocabulary's layout: stream decoding of characters split over byte tokens,
 * special-token parsing, llama.cpp's defaults for BOS, detokenization cleanup, errors.
 */
import { describe, expect, it } from "vitest";
import { TokenizerError } from "../../../src/errors.ts";
import { cleanSpaces } from "../../../src/tokenizer/decode.ts";
import { syntheticTokenizerMetadata } from "../../../src/tokenizer/synthetic.ts";
import { SYNTHETIC_CORPUS } from "../../../src/tokenizer/synthetic-corpus.ts";
import { tokenizerFromMetadata } from "../../../src/tokenizer/tokenizer.ts";
import { BYTE_TO_CHAR } from "../../../src/tokenizer/unicode.ts";
import { TokenType } from "../../../src/tokenizer/vocab.ts";

const utf8 = (s: string): number[] => [...new TextEncoder().encode(s)];

/**
 * A gpt2-kind vocabulary of the 256 byte characters (id = byte value), one merge
 * ("a" + "b" → "ab", id 256), then extra tokens of the given types.
 */
function byteVocab(extra: readonly [string, number][] = [], more: Record<string, unknown> = {}): Record<string, unknown> {
  const tokens = [...BYTE_TO_CHAR, "ab", ...extra.map(([t]) => t)];
  const types = [...tokens.slice(0, 257).map(() => TokenType.Normal), ...extra.map(([, type]) => type)];
  return {
    "tokenizer.ggml.model": "gpt2",
    "tokenizer.ggml.pre": "qwen2",
    "tokenizer.ggml.tokens": tokens,
    "tokenizer.ggml.token_type": types,
    "tokenizer.ggml.merges": ["a b"],
    ...more,
  };
}

/** A llama-kind vocabulary: <unk>, <s>, </s>, the 256 <0xNN> tokens (id = 3 + byte), "▁", "a", "▁a". */
function spmVocab(more: Record<string, unknown> = {}): Record<string, unknown> {
  const bytes = Array.from({ length: 256 }, (_, b) => `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
  const tokens = ["<unk>", "<s>", "</s>", ...bytes, "\u2581", "a", "\u2581a"];
  const types = [TokenType.Unknown, TokenType.Control, TokenType.Control, ...bytes.map(() => TokenType.Byte), 1, 1, 1];
  const scores = tokens.map((_, i) => (i === 261 ? -1 : -10));
  return {
    "tokenizer.ggml.model": "llama",
    "tokenizer.ggml.tokens": tokens,
    "tokenizer.ggml.token_type": types,
    "tokenizer.ggml.scores": scores,
    ...more,
  };
}

describe("stream decoding", () => {
  it("holds back a character split over byte-level tokens until its last byte", () => {
    const t = tokenizerFromMetadata(byteVocab());
    const d = t.createStreamDecoder();
    // "€" is E2 82 AC; with one token per byte, the first two complete nothing.
    const [e0, e1, e2] = utf8("€") as [number, number, number];
    expect(d.push(0x61)).toBe("a");
    expect(d.push(e0)).toBe("");
    expect(d.push(e1)).toBe("");
    expect(d.push(e2)).toBe("€");
    // "😀" is F0 9F 98 80: one byte, then three, then a plain token.
    const emoji = utf8("😀");
    expect(d.push(emoji[0] as number)).toBe("");
    expect(d.push(emoji[1] as number) + d.push(emoji[2] as number)).toBe("");
    expect(d.push(emoji[3] as number)).toBe("😀");
    expect(d.push(256)).toBe("ab");
    expect(d.flush()).toBe("");
  });

  it("holds back split characters with <0xNN> byte-fallback tokens too", () => {
    const t = tokenizerFromMetadata(spmVocab());
    // "é" is C3 A9 → tokens 3 + 0xC3 and 3 + 0xA9.
    const ids = t.encode("é", { addSpecial: false });
    expect(ids).toEqual([259, 3 + 0xc3, 3 + 0xa9]); // "▁" then the two bytes
    const d = t.createStreamDecoder();
    expect(ids.map((id) => d.push(id))).toEqual([" ", "", "é"]);
  });

  it("turns an unfinished character into U+FFFD on flush, and keeps going after a bad byte", () => {
    const t = tokenizerFromMetadata(byteVocab());
    const d = t.createStreamDecoder();
    expect(d.push(0xe2)).toBe("");
    expect(d.flush()).toBe("\ufffd");
    // A lone continuation byte cannot start a character: replaced at once.
    expect(d.push(0x80)).toBe("\ufffd");
    expect(d.push(0x62)).toBe("b");
  });

  it("renders or skips control tokens as asked, and agrees with decode", () => {
    const t = tokenizerFromMetadata(byteVocab([["<|im_end|>", TokenType.Control]]));
    const ids = [0x68, 0x69, 257];
    const rendered = t.createStreamDecoder();
    const skipped = t.createStreamDecoder({ skipSpecial: true });
    expect(ids.map((id) => rendered.push(id)).join("")).toBe("hi<|im_end|>");
    expect(ids.map((id) => skipped.push(id)).join("")).toBe("hi");
    expect(t.decode(ids)).toBe("hi<|im_end|>");
    expect(t.decode(ids, { skipSpecial: true })).toBe("hi");
  });
});

describe("special tokens in text", () => {
  // 257 <|a|> and 258 <|ab|> control; 259 <u> user-defined.
  const t = tokenizerFromMetadata(
    byteVocab([
      ["<|a|>", TokenType.Control],
      ["<|ab|>", TokenType.Control],
      ["<u>", TokenType.UserDefined],
    ]),
  );
  const bytes = (s: string): number[] => utf8(s); // one token per byte here (no merges apply)

  it("matches whole special tokens, the longer one first", () => {
    expect(t.encode("x<|ab|>y<|a|><u>", { addSpecial: false })).toEqual([0x78, 258, 0x79, 257, 259]);
  });

  it("keeps control-token text as text without parseSpecial, but still splits out user-defined tokens", () => {
    expect(t.encode("x<|a|><u>", { addSpecial: false, parseSpecial: false })).toEqual([0x78, ...bytes("<|a|>"), 259]);
  });

  it("leaves partial special-token text alone", () => {
    expect(t.encode("<|a", { addSpecial: false })).toEqual(bytes("<|a"));
    expect(t.encode("<|a|", { addSpecial: false })).toEqual(bytes("<|a|"));
  });

  it("applies merges inside the text between special tokens", () => {
    expect(t.encode("ab<|a|>ab", { addSpecial: false })).toEqual([256, 257, 256]);
  });

  it("puts SentencePiece's dummy space at the start and after each special token", () => {
    const spm = tokenizerFromMetadata(spmVocab());
    // "a" → "▁a" (261); after </s> again "▁a"; BOS (1) added by default for the llama kind.
    expect(spm.encode("a</s>a")).toEqual([1, 261, 2, 261]);
    expect(spm.encode("a</s>a", { parseSpecial: false, addSpecial: false })[0]).toBe(261);
  });
});

describe("llama.cpp's defaults", () => {
  it("adds BOS for the llama kind unless add_bos_token says otherwise", () => {
    expect(tokenizerFromMetadata(spmVocab()).encode("a")).toEqual([1, 261]);
    expect(tokenizerFromMetadata(spmVocab({ "tokenizer.ggml.add_bos_token": false })).encode("a")).toEqual([261]);
    expect(tokenizerFromMetadata(spmVocab({ "tokenizer.ggml.add_eos_token": true })).encode("a")).toEqual([1, 261, 2]);
  });

  it("adds no BOS for gpt2 unless the pre-tokenizer is Llama 3's or the key says so", () => {
    const bos = { "tokenizer.ggml.bos_token_id": 0x21 };
    expect(tokenizerFromMetadata(byteVocab([], bos)).encode("a")).toEqual([0x61]);
    expect(tokenizerFromMetadata(byteVocab([], { ...bos, "tokenizer.ggml.pre": "llama-bpe" })).encode("a")).toEqual([0x21, 0x61]);
    expect(tokenizerFromMetadata(byteVocab([], { ...bos, "tokenizer.ggml.add_bos_token": true })).encode("a")).toEqual([0x21, 0x61]);
  });

  it("takes llama.cpp's default ids and end-of-generation tokens by text", () => {
    const spm = tokenizerFromMetadata(spmVocab());
    expect([spm.bos, spm.eos, spm.unk]).toEqual([1, 2, 0]);
    expect([...spm.eogIds]).toEqual([2]);
    const t = tokenizerFromMetadata(byteVocab([["<|im_end|>", TokenType.Control], ["<|endoftext|>", TokenType.Normal]]));
    // gpt2 defaults BOS = EOS = 11; both texts end generation (the second becomes control).
    expect([t.bos, t.eos]).toEqual([11, 11]);
    expect([...t.eogIds].sort((a, b) => a - b)).toEqual([11, 257, 258]);
    expect(t.eot).toBe(257);
    expect(t.isEog(258)).toBe(true);
    expect(t.isEog(0x61)).toBe(false);
  });

  it("reads values wrapped as { type, value } like the GGUF writer's entries", () => {
    const entries = syntheticTokenizerMetadata("gpt2", 512, { pre: "qwen2" });
    const t = tokenizerFromMetadata(Object.fromEntries(entries));
    expect(t.vocabSize).toBe(512);
    expect(t.decode(t.encode("Hello there, world!"))).toBe("Hello there, world!");
  });
});

describe("detokenization", () => {
  it("cleans spaces before punctuation and around apostrophes as llama.cpp does", () => {
    const clean = (s: string): string => new TextDecoder().decode(cleanSpaces(new TextEncoder().encode(s)));
    expect(clean("a , b . c ! d ?")).toBe("a, b. c! d?");
    expect(clean("x ' y")).toBe("x'y");
    expect(clean("it 's I 'm we 're you 've")).toBe("it's I'm we're you've");
    expect(clean("don 't I 'd we 'll")).toBe("don 't I 'd we 'll");
  });

  it("removes the dummy prefix space from the first piece only when no BOS precedes it", () => {
    const spm = tokenizerFromMetadata(spmVocab());
    expect(spm.decode([261, 261])).toBe("a a");
    expect(spm.decode([1, 261])).toBe("<s> a");
    expect(spm.decode([1, 261], { skipSpecial: true })).toBe(" a");
  });

  it("round-trips text through encode and decode", () => {
    const t = tokenizerFromMetadata(Object.fromEntries(syntheticTokenizerMetadata("gpt2", 2048, { pre: "qwen2" })));
    expect(t.decode(t.encode(SYNTHETIC_CORPUS))).toBe(SYNTHETIC_CORPUS);
    const spm = tokenizerFromMetadata(Object.fromEntries(syntheticTokenizerMetadata("llama", 2048)));
    expect(spm.decode(spm.encode(SYNTHETIC_CORPUS, { addSpecial: false }))).toBe(SYNTHETIC_CORPUS);
  });
});

describe("errors", () => {
  it("names the missing or malformed key", () => {
    const err = (meta: Record<string, unknown>): TokenizerError => {
      try {
        tokenizerFromMetadata(meta);
      } catch (e) {
        if (e instanceof TokenizerError) return e;
        throw e;
      }
      throw new Error("no error thrown");
    };
    expect(err({}).message).toMatch(/tokenizer\.ggml\.model/);
    expect(err({ "tokenizer.ggml.model": "t5", "tokenizer.ggml.tokens": ["a"] }).code).toBe("UNSUPPORTED_TOKENIZER");
    const noMerges = byteVocab();
    delete noMerges["tokenizer.ggml.merges"];
    expect(err(noMerges).message).toMatch(/tokenizer\.ggml\.merges/);
    expect(err(byteVocab([], { "tokenizer.ggml.pre": "no-such-pre" })).code).toBe("UNSUPPORTED_PRE_TOKENIZER");
    expect(err(byteVocab([], { "tokenizer.ggml.token_type": [1, 2] })).message).toMatch(/token_type/);
    const t = tokenizerFromMetadata(byteVocab());
    expect(() => t.decode([999])).toThrow(/999/);
  });
});

describe("speed", () => {
  it("encodes about 1 MB of text in a few seconds", () => {
    let text = "";
    for (let i = 0; text.length < 1_000_000; i++) text += SYNTHETIC_CORPUS.replaceAll("the", `the${i % 97}`);
    for (const [kind, pre] of [["gpt2", "llama-bpe"], ["llama", undefined]] as const) {
      const t = tokenizerFromMetadata(Object.fromEntries(syntheticTokenizerMetadata(kind, 4096, { pre })));
      const start = performance.now();
      const ids = t.encode(text);
      const seconds = (performance.now() - start) / 1000;
      console.log(`${kind}: ${text.length} characters → ${ids.length} tokens in ${seconds.toFixed(2)} s`);
      // About 0.5 s each on this 2-core machine; the bound allows for a busy machine.
      expect(seconds).toBeLessThan(8);
    }
  });
});
