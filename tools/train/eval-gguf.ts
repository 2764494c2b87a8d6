/**
 * Held-out loss of each shipped variant as llama.cpp computes it, plus llama.cpp's greedy
 * continuations of the model card's prompts.
 *
 * Run: deno run -A tools/train/eval-gguf.ts [--data .cache/train] [--models models] [--docs N]
 * Needs heldout-ids.json from tools/train/heldout_ids.py. Writes eval-gguf.json in --data.
 *
 * The loss is the one train.py reports: every held-out document alone, cut into windows
 * of 255 tokens each run as BOS + window (perplexity.ts's definition, context 256), the
 * NLL of every text token summed over all documents and divided by their UTF-8 bytes.
 * It also counts documents where llama.cpp's tokenizer disagrees with bpe.py's.
 */
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import type { LlamaContext, LlamaModel, Token } from "node-llama-cpp";
import { perplexityOfIds } from "../../src/model/perplexity.ts";
import { llamaCppBackend, llamaCppLogProbs } from "../../test/node/embedded/llamacpp-logprobs.ts";
import { createExactContext, loadLlamaCppModel } from "../../test/node/support/llamacpp.ts";
import { SHIPPED_MIXES } from "./export.ts";

/** Prompts of the model card's sample table (plain prompts get BOS in front). */
export const SAMPLE_PROMPTS: readonly string[] = ["The meaning of life is", "A computer", "Love is", "Never"];
const CHAT_PROMPT = "<|user|>\nTell me a fortune.<|endoftext|><|assistant|>\n";
const CONTEXT = 256;
/** The shipped vocabulary size (llama.cpp's probability lists are indexed by token id). */
const VOCAB = 1024;

interface HeldoutDoc {
  readonly text: string;
  readonly ids: readonly number[];
}

/** Result for one variant. */
export interface VariantEval {
  readonly file: string;
  readonly natsPerByte: number;
  readonly bitsPerByte: number;
  readonly tokens: number;
  readonly bytes: number;
  readonly tokenizerMismatches: number;
  readonly samples: readonly { readonly prompt: string; readonly greedy: string }[];
}

/** Greedy continuation, one full re-evaluation per token (tiny model, short prompts). */
async function greedy(model: LlamaModel, context: LlamaContext, prompt: readonly number[], n: number): Promise<string> {
  const ids = [...prompt];
  const out: number[] = [];
  const eot = model.tokens.eos;
  for (let i = 0; i < n; i++) {
    const logits = (await llamaCppLogProbs(context, ids, VOCAB)).at(-1)!;
    let best = 0;
    for (let j = 1; j < logits.length; j++) if (logits[j]! > logits[best]!) best = j;
    if (best === eot) break;
    ids.push(best);
    out.push(best);
  }
  return model.detokenize(out as Token[]);
}

async function evalVariant(path: string, docs: readonly HeldoutDoc[]): Promise<VariantEval> {
  const model = await loadLlamaCppModel(path);
  const context = await createExactContext(model, CONTEXT);
  try {
    const bos = model.tokens.bos!;
    let nll = 0;
    let tokens = 0;
    let bytes = 0;
    let mismatches = 0;
    for (const doc of docs) {
      const ids = model.tokenize(doc.text);
      if (ids.length !== doc.ids.length || ids.some((t, i) => t !== doc.ids[i])) mismatches++;
      const r = await perplexityOfIds(doc.ids, llamaCppBackend(context, VOCAB), { bos, context: CONTEXT });
      nll += r.nll * r.tokens;
      tokens += r.tokens;
      bytes += new TextEncoder().encode(doc.text).byteLength;
    }
    const samples = [];
    for (const p of SAMPLE_PROMPTS) {
      samples.push({ prompt: p, greedy: await greedy(model, context, [bos, ...model.tokenize(p)], 48) });
    }
    const chat = [bos, ...model.tokenize(CHAT_PROMPT, true)];
    samples.push({ prompt: "<chat> Tell me a fortune.", greedy: await greedy(model, context, chat, 48) });
    return {
      file: path,
      natsPerByte: nll / bytes,
      bitsPerByte: nll / bytes / Math.LN2,
      tokens,
      bytes,
      tokenizerMismatches: mismatches,
      samples,
    };
  } finally {
    await context.dispose();
    await model.dispose();
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const opt = (name: string, fallback: string) => {
    const i = args.indexOf(name);
    return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : fallback;
  };
  const data = opt("--data", ".cache/train");
  const models = opt("--models", "models");
  const limit = Number(opt("--docs", "0"));
  const all = JSON.parse(await readFile(join(data, "heldout-ids.json"), "utf8")) as HeldoutDoc[];
  // --docs N: only the first N documents (a quick check; the model card uses all of them).
  const docs = limit > 0 ? all.slice(0, limit) : all;
  const results: VariantEval[] = [];
  for (const [, suffix] of SHIPPED_MIXES) {
    const r = await evalVariant(join(models, `tiny-fortunes-${suffix}.gguf`), docs);
    console.log(`${suffix}: ${r.natsPerByte.toFixed(4)} nats/byte, ${r.bitsPerByte.toFixed(4)} bits/byte, tokenizer mismatches ${r.tokenizerMismatches}`);
    results.push(r);
  }
  await writeFile(join(data, "eval-gguf.json"), JSON.stringify(results, null, 1));
  console.log(JSON.stringify(results.map((r) => r.samples), null, 1));
  process.exit(0);
}

if (import.meta.main) await main();
