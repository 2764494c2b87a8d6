/**
 * Our tokenizers against llama.cpp's on the same GGUF vocabularies: synthetic
 * vocabularies of both kinds, gpt2 with each supported pre-tokenizer, inside a tiny
 * llama model that llama.cpp loads. Ids must be equal for every corpus string, with and
 * without special-token parsing, and so must the text of those ids.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { LlamaModel, Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openGGUF } from "../../../src/gguf/reader.ts";
import { type MetaEntry, meta } from "../../../src/gguf/writer.ts";
import { syntheticTokenizerMetadata } from "../../../src/tokenizer/synthetic.ts";
import { type Tokenizer, tokenizerFromMetadata } from "../../../src/tokenizer/tokenizer.ts";
import { loadLlamaCppModel } from "../support/llamacpp.ts";
import { writeTinyLlamaModel } from "../support/tiny-model.ts";
import { randomStrings } from "./corpus.ts"
const TOKENIZER_CORPUS = randomStrings(3000, 12345);;

interface Case {
  readonly name: string;
  readonly kind: "gpt2" | "llama";
  readonly vocabSize: number;
  readonly pre?: string;
  /** Keys to drop (so llama.cpp's defaults apply) and keys to set. */
  readonly drop?: readonly string[];
  readonly set?: readonly [string, MetaEntry][];
}

const CASES: readonly Case[] = [
  { name: "gpt2/default", kind: "gpt2", vocabSize: 2048, pre: "default" },
  { name: "gpt2/llama-bpe", kind: "gpt2", vocabSize: 2048, pre: "llama-bpe" },
  { name: "gpt2/llama3", kind: "gpt2", vocabSize: 1000, pre: "llama3" },
  { name: "gpt2/qwen2", kind: "gpt2", vocabSize: 2048, pre: "qwen2" },
  { name: "gpt2/smollm", kind: "gpt2", vocabSize: 2048, pre: "smollm" },
  { name: "gpt2/gpt-2", kind: "gpt2", vocabSize: 512, pre: "gpt-2" },
  { name: "llama/1024", kind: "llama", vocabSize: 1024 },
  { name: "llama/512", kind: "llama", vocabSize: 512 },
  // llama.cpp's defaults when the flags and ids are absent, and the flags turned around.
  {
    name: "llama/defaults",
    kind: "llama",
    vocabSize: 700,
    drop: ["tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id"],
  },
  {
    name: "llama/eos-no-prefix",
    kind: "llama",
    vocabSize: 700,
    set: [["tokenizer.ggml.add_eos_token", meta.bool(true)], ["tokenizer.ggml.add_space_prefix", meta.bool(false)], ["tokenizer.ggml.add_bos_token", meta.bool(false)]],
  },
  {
    name: "gpt2/llama-bpe-defaults",
    kind: "gpt2",
    vocabSize: 700,
    pre: "llama-bpe",
    drop: ["tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token"],
  },
  { name: "gpt2/default-no-pre", kind: "gpt2", vocabSize: 700, pre: "default", drop: ["tokenizer.ggml.pre"] },
  // A Qwen-sized vocabulary: 150k padding control tokens for special-token matching to skip.
  { name: "gpt2/qwen2-151936", kind: "gpt2", vocabSize: 151936, pre: "qwen2" },
];

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tokenizer-llamacpp-"));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe.each(CASES)("tokenizer $name matches llama.cpp", (c) => {
  let ours: Tokenizer;
  let model: LlamaModel;

  beforeAll(async () => {
    const entries = syntheticTokenizerMetadata(c.kind, c.vocabSize, { pre: c.pre })
      .filter(([key]) => !c.drop?.includes(key) && !c.set?.some(([k]) => k === key))
      .concat(c.set ?? []);
    const path = join(dir, `${c.name.replace("/", "-")}.gguf`);
    await writeTinyLlamaModel(path, entries);
    // Read back through the GGUF reader, as the runtime gets its metadata.
    const file = await openGGUF(path);
    try {
      ours = tokenizerFromMetadata(file.metadata);
    } finally {
      await file.close();
    }
    model = await loadLlamaCppModel(path);
  });

  afterAll(async () => {
    await model?.dispose();
  });

  it("has the same special tokens, flags and end-of-generation set", () => {
    expect(ours.vocabSize).toBe(c.vocabSize);
    expect(ours.bos ?? null).toBe(model.tokens.bos);
    expect(ours.eos ?? null).toBe(model.tokens.eos);
    // With both <|im_end|> and <|endoftext|> present, llama.cpp's EOT is whichever its hash
    // map yields first (it differs between these vocabularies); ours prefers <|im_end|>.
    // Either way both end generation, which is what the id is used for.
    expect(ours.tokenText(ours.eot ?? 0)).toBe("<|im_end|>");
    expect(ours.eogIds.has(model.tokens.eot ?? -1)).toBe(true);
    expect(ours.addBos).toBe(model.tokens.shouldPrependBosToken);
    expect(ours.addEos).toBe(model.tokens.shouldAppendEosToken);
    const theirEog: number[] = [];
    for (let id = 0; id < Math.min(c.vocabSize, 5000); id++) if (model.isEogToken(id as Token)) theirEog.push(id);
    expect([...ours.eogIds].sort((a, b) => a - b)).toEqual(theirEog);
  });

  it.each([true, false])("encodes every corpus string to llama.cpp's ids (parseSpecial %s)", (parseSpecial) => {
    let matched = 0;
    const mismatches: string[] = [];
    for (const text of TOKENIZER_CORPUS) {
      const expected = Array.from(model.tokenize(text, parseSpecial));
      const actual = ours.encode(text, { addSpecial: false, parseSpecial });
      if (JSON.stringify(actual) === JSON.stringify(expected)) matched++;
      else if (mismatches.length < 3) mismatches.push(`${JSON.stringify(text)}\n  ours ${actual}\n  llama.cpp ${expected}`);
    }
    console.log(`${c.name}: ${matched}/${TOKENIZER_CORPUS.length} strings tokenized identically (parseSpecial ${parseSpecial})`);
    expect(mismatches).toEqual([]);
  });

  it("adds BOS and EOS where llama.cpp's model does", () => {
    const ids = ours.encode("Hello world");
    const body = Array.from(model.tokenize("Hello world", true));
    const bos = model.tokens.shouldPrependBosToken ? [model.tokens.bos] : [];
    const eos = model.tokens.shouldAppendEosToken ? [model.tokens.eos] : [];
    expect(ids).toEqual([...bos, ...body, ...eos]);
  });

  it.each([true, false])("decodes every corpus string's ids as llama.cpp does (special tokens rendered: %s)", (special) => {
    let matched = 0;
    const mismatches: string[] = [];
    for (const text of TOKENIZER_CORPUS) {
      const ids = Array.from(model.tokenize(text, true));
      // Leading BOS exercises the dummy-prefix rule of detokenization.
      for (const seq of [ids, model.tokens.bos !== null ? [model.tokens.bos, ...ids] : ids]) {
        const expected = model.detokenize(seq, special);
        const actual = ours.decode(seq, { skipSpecial: !special });
        if (actual === expected) matched++;
        else if (mismatches.length < 3) mismatches.push(`${JSON.stringify(text)}\n  ours ${JSON.stringify(actual)}\n  llama.cpp ${JSON.stringify(expected)}`);
      }
    }
    console.log(`${c.name}: ${matched}/${2 * TOKENIZER_CORPUS.length} id sequences detokenized identically (special ${special})`);
    expect(mismatches).toEqual([]);
  });
});
