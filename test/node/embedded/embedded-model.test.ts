/**
 * The embedded default model (models/tiny-fortunes-*.gguf) as llama.cpp and our CPU
 * reference see it:
 * - llama.cpp loads every variant, and its greedy text is mostly ASCII words;
 * - llama.cpp's `gpt-2` tokenizer gives the ids our BPE trainer (tools/train/bpe.py) gave;
 * - held-out perplexity of F32 by llama.cpp and by the reference agree within 0.5%, and
 *   each quantized variant stays within 5% of F32.
 * The held-out text is a 3 KB slice of documents the model never trained on
 * (test/fixtures/heldout-sample.txt, written by tools/train/heldout_ids.py).
 */
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import type { LlamaContext, LlamaModel, Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { openGGUF } from "../../../src/gguf/reader.ts";
import { type PerplexityResult, perplexityOfIds, referenceLogitsBackend } from "../../../src/model/perplexity.ts";
import { ReferenceModel } from "../../../src/model/reference.ts";
import { createExactContext, loadLlamaCppModel } from "../support/llamacpp.ts";
import { llamaCppBackend, llamaCppLogProbs } from "./llamacpp-logprobs.ts";

const root = (p: string) => fileURLToPath(new URL(`../../../${p}`, import.meta.url));
const VARIANTS = ["f32", "f16", "q8_0", "q4_k_m"] as const;
type Variant = (typeof VARIANTS)[number];
const modelPath = (v: Variant) => root(`models/tiny-fortunes-${v}.gguf`);
/** The model's context; perplexity windows use all of it. */
const CONTEXT = 256;
const VOCAB = 1024;
/** Upper bound on F32 nats per byte over the sample (see the held-out test). */
const NATS_PER_BYTE_BOUND = 2.0;

interface Loaded {
  readonly model: LlamaModel;
  readonly context: LlamaContext;
}

const loaded = new Map<Variant, Loaded>();
let sampleText = "";
let sampleIds: number[] = [];

function get(v: Variant): Loaded {
  const l = loaded.get(v);
  if (!l) throw new Error(`${v} was not loaded`);
  return l;
}

beforeAll(async () => {
  sampleText = await readFile(root("test/fixtures/heldout-sample.txt"), "utf8");
  sampleIds = JSON.parse(await readFile(root("test/fixtures/heldout-sample.ids.json"), "utf8")) as number[];
  for (const v of VARIANTS) {
    const model = await loadLlamaCppModel(modelPath(v));
    loaded.set(v, { model, context: await createExactContext(model, CONTEXT) });
  }
});

afterAll(async () => {
  for (const { model, context } of loaded.values()) {
    await context.dispose();
    await model.dispose();
  }
});

/** llama.cpp's greedy continuation of `prompt` (BOS first), stopping at end of text. */
async function greedyText(v: Variant, prompt: string, n: number): Promise<string> {
  const { model, context } = get(v);
  const ids: number[] = [model.tokens.bos!, ...model.tokenize(prompt)];
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const logProbs = (await llamaCppLogProbs(context, ids, VOCAB)).at(-1)!;
    let best = 0;
    for (let j = 1; j < logProbs.length; j++) if (logProbs[j]! > logProbs[best]!) best = j;
    if (best === model.tokens.eos) break;
    ids.push(best);
    out.push(best);
  }
  return model.detokenize(out.map((t) => t as Token));
}

/** Share of whitespace-separated pieces that are an English-looking word with punctuation. */
function wordShare(text: string): number {
  const pieces = text.split(/\s+/).filter((p) => p.length > 0);
  const words = pieces.filter((p) => /^["'(-]*[A-Za-z][A-Za-z']*[-.,;:!?"')]*$/.test(p));
  return pieces.length === 0 ? 0 : words.length / pieces.length;
}

async function llamaCppPerplexity(v: Variant): Promise<PerplexityResult> {
  const { model, context } = get(v);
  return perplexityOfIds(sampleIds, llamaCppBackend(context, VOCAB), { bos: model.tokens.bos!, context: CONTEXT });
}

describe("embedded model under llama.cpp", () => {
  test.each(VARIANTS)("%s: greedy text is mostly ASCII words", async (v) => {
    const text = await greedyText(v, "The meaning of life is", 40);
    const ascii = [...text].filter((c) => (c >= " " && c <= "~") || c === "\n" || c === "\t").length;
    expect(text.length).toBeGreaterThan(40);
    expect(ascii / text.length).toBeGreaterThan(0.95);
    expect(wordShare(text)).toBeGreaterThan(0.7);
    // Not one word repeated forever: a real text has several distinct words.
    expect(new Set(text.toLowerCase().match(/[a-z]+/g)).size).toBeGreaterThan(5);
  });

  test("llama.cpp's gpt-2 tokenizer reproduces the trainer's ids", () => {
    const { model } = get("f32");
    expect(Array.from(model.tokenize(sampleText), Number)).toEqual(sampleIds);
  });
});

describe("held-out perplexity", () => {
  let f32: PerplexityResult;

  test("F32: llama.cpp and the CPU reference agree within 0.5%", async () => {
    f32 = await llamaCppPerplexity("f32");
    const file = await openGGUF(modelPath("f32"));
    try {
      const reference = await ReferenceModel.load(file);
      const ours = await perplexityOfIds(sampleIds, referenceLogitsBackend(reference), {
        bos: get("f32").model.tokens.bos!,
        context: CONTEXT,
      });
      console.log(
        `embedded f32 held-out slice: llama.cpp ppl ${f32.perplexity.toFixed(4)}, reference ${ours.perplexity.toFixed(4)} ` +
          `(${(100 * (ours.perplexity / f32.perplexity - 1)).toFixed(4)}%) over ${f32.tokens} tokens`,
      );
      expect(ours.tokens).toBe(f32.tokens);
      expect(Math.abs(ours.perplexity / f32.perplexity - 1)).toBeLessThan(0.005);
    } finally {
      await file.close();
    }
    // The shipped model must have learned the corpus: an untrained one scores about 2.9
    // nats per byte here; the shipped F32 measured 1.71 on this slice (1.63 on all
    // held-out text). The bound leaves room for a retrained model, not for a broken one.
    const natsPerByte = (f32.nll * f32.tokens) / new TextEncoder().encode(sampleText).byteLength;
    expect(natsPerByte).toBeLessThan(NATS_PER_BYTE_BOUND);
  });

  test.each(["f16", "q8_0", "q4_k_m"] as const)("%s: perplexity within 5 percent of F32", async (v) => {
    const q = await llamaCppPerplexity(v);
    console.log(`embedded ${v}: llama.cpp ppl ${q.perplexity.toFixed(4)} (${(100 * (q.perplexity / f32.perplexity - 1)).toFixed(3)}% vs F32)`);
    expect(q.tokens).toBe(f32.tokens);
    expect(Math.abs(q.perplexity / f32.perplexity - 1)).toBeLessThan(0.05);
  });
});
