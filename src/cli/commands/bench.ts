/**
 * `deno task cli bench`: load time, prefill and decode speed, time to first token and peak
 * GPU memory, through the engine as every user gets it. A warm-up run is excluded; each
 * figure is the median over repetitions, with the spread (min–max).
 */
import { performance } from "node:perf_hooks";
import { DEFAULT_LOOKAHEAD, type Engine } from "../../engine/engine.ts";
import { probeWebGpu } from "../../gpu/provider.ts";
import type { GenerationResult } from "../../engine/types.ts";
import { type CliCommand, defineCommand } from "../command.ts";
import { InvalidArgumentError } from "../../errors.ts";
import { ENGINE_FLAGS, engineFromFlags } from "../engine-flags.ts";
import { formatProfile, profileModel } from "./bench-profile.ts";

const SPEC = {
  name: "bench",
  summary: "Measures load time, prefill and decode tokens/s, time to first token and peak GPU memory.",
  flags: {
    ...ENGINE_FLAGS,
    promptTokens: {
      type: "number",
      integer: true,
      min: 1,
      default: 128,
      placeholder: "n",
      description: "prompt length in tokens",
    },
    genTokens: {
      type: "number",
      integer: true,
      min: 2,
      default: 64,
      placeholder: "n",
      description: "tokens generated per request",
    },
    concurrency: {
      type: "number",
      integer: true,
      min: 1,
      default: 1,
      placeholder: "n",
      description: "requests run together",
    },
    repetitions: {
      type: "number",
      integer: true,
      min: 1,
      default: 3,
      placeholder: "n",
      description: "measured runs (after one warm-up)",
    },
    json: { type: "boolean", description: "print one JSON object" },
    profile: {
      type: "boolean",
      description: "time each kernel of a prefill and a decode step on the GPU (timestamp queries) instead",
    },
  },
} as const;

/** A figure over repetitions. */
export interface Spread {
  readonly median: number;
  readonly min: number;
  readonly max: number;
}

function spread(values: readonly number[]): Spread {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { median, min: sorted[0]!, max: sorted.at(-1)! };
}

/** `n` token ids of ordinary text (BOS first where the model adds one). */
function promptIds(engine: Engine, n: number): number[] {
  const text =
    "The old lighthouse keeper counted the ships that passed in the night, one by one, and wrote their names in a book. ";
  let ids = engine.tokenizer.encode(text);
  while (ids.length < n) ids = ids.concat(engine.tokenizer.encode(text, { addSpecial: false }));
  return ids.slice(0, n);
}

interface Run {
  readonly prefillTokS: number;
  readonly decodeTokS: number;
  readonly ttftMs: number;
}

async function measure(engine: Engine, ids: number[], genTokens: number, concurrency: number): Promise<Run> {
  const start = performance.now();
  const results: GenerationResult[] = await Promise.all(
    Array.from(
      { length: concurrency },
      () => engine.generate({ tokens: ids }, { maxTokens: genTokens, ignoreEos: true, temperature: 0 }).result,
    ),
  );
  const wall = performance.now() - start;
  const ttfts = results.map((r) => r.timings.timeToFirstTokenMs);
  const prefillTokens = results.reduce((n, r) => n + r.usage.promptTokens, 0);
  const decodeTokens = results.reduce((n, r) => n + r.usage.completionTokens - 1, 0);
  const lastFirstToken = Math.max(...ttfts);
  return {
    // All prompts are in once the last first token exists; decoding fills the rest of the wall time.
    prefillTokS: (prefillTokens / lastFirstToken) * 1000,
    decodeTokS: (decodeTokens / Math.max(1e-6, wall - lastFirstToken)) * 1000,
    ttftMs: spread(ttfts).median,
  };
}

export const benchCommand: CliCommand = defineCommand(
  SPEC,
  "benchmark load, prefill, decode, time to first token and GPU memory",
  async (f) => {
    if (f.profile) {
      const { engine, loaded } = engineFromFlags(f, { maxSequences: 1, maxBatchTokens: Math.max(256, f.promptTokens) });
      try {
        await loaded;
        const report = await profileModel(engine, { promptTokens: f.promptTokens, lookahead: f.lookahead ?? DEFAULT_LOOKAHEAD });
        console.log(f.json ? JSON.stringify(report) : formatProfile(report));
      } finally {
        await engine.dispose();
      }
      return 0;
    }
    const loadStart = performance.now();
    const { engine, loaded } = engineFromFlags(f, {
      maxSequences: f.concurrency,
      maxBatchTokens: Math.max(256, f.concurrency),
      // Every run sends the same prompt: reusing its pages would measure the cache, not prefill.
      prefixCache: false,
    });
    try {
      await loaded;
      const loadMs = performance.now() - loadStart;
      const context = engine.limits.contextLength;
      const promptTokens = Math.min(f.promptTokens, context - f.genTokens);
      if (promptTokens < 1) {
        throw new InvalidArgumentError("--gen-tokens", `${f.genTokens} generated tokens leave no room for a prompt in a context of ${context}`);
      }
      const ids = promptIds(engine, promptTokens);
      await measure(engine, ids.slice(0, Math.min(16, ids.length)), 4, 1); // warm-up
      const runs: Run[] = [];
      for (let i = 0; i < f.repetitions; i++) runs.push(await measure(engine, ids, f.genTokens, f.concurrency));
      // Provider, adapter and an empty submit-and-read round trip, on a short-lived device of the same provider.
      const probe = f.backend === "webgpu" ? await probeWebGpu(f.webgpu as "auto" | "dawn" | "deno") : undefined;
      const out = {
        model: engine.config.name,
        backend: f.backend,
        adapter: probe?.adapter ?? engine.description,
        webgpu: probe?.provider ?? null,
        lookahead: f.lookahead ?? DEFAULT_LOOKAHEAD,
        roundtrip_us: probe ? Math.round(probe.roundTripUs) : null,
        concurrency: f.concurrency,
        prompt_tokens: promptTokens,
        gen_tokens: f.genTokens,
        repetitions: f.repetitions,
        load_ms: loadMs,
        prefill_tok_s: spread(runs.map((r) => r.prefillTokS)).median,
        decode_tok_s: spread(runs.map((r) => r.decodeTokS)).median,
        ttft_ms: spread(runs.map((r) => r.ttftMs)).median,
        peak_gpu_bytes: engine.peakMemoryBytes(),
        context: context,
        kv_pool_bytes: engine.kvPool.bytes,
        kv_pages: engine.kvPool.pageCount,
        kv_page_size: engine.kvPool.pageSize,
        spread: {
          prefill_tok_s: spread(runs.map((r) => r.prefillTokS)),
          decode_tok_s: spread(runs.map((r) => r.decodeTokS)),
          ttft_ms: spread(runs.map((r) => r.ttftMs)),
        },
      };
      if (f.json) console.log(JSON.stringify(out));
      else {
        const s = out.spread;
        const fmt = (x: Spread, d = 1) => `${x.median.toFixed(d)}  (${x.min.toFixed(d)}–${x.max.toFixed(d)})`;
        console.log(
          `model ${out.model} on ${out.adapter}; ${promptTokens} prompt + ${f.genTokens} generated tokens, ` +
            `concurrency ${f.concurrency}, ${f.repetitions} runs (median, min–max)`,
        );
        console.log(`load          ${loadMs.toFixed(0)} ms`);
        console.log(`prefill       ${fmt(s.prefill_tok_s)} tok/s`);
        console.log(`decode        ${fmt(s.decode_tok_s)} tok/s`);
        console.log(`first token   ${fmt(s.ttft_ms)} ms`);
        console.log(`peak GPU      ${(out.peak_gpu_bytes / 2 ** 20).toFixed(1)} MiB`);
        console.log(
          `KV pool       ${(out.kv_pool_bytes / 2 ** 20).toFixed(1)} MiB, ${out.kv_pages} pages of ${out.kv_page_size} ` +
            `positions; context ${context}`,
        );
      }
      return 0;
    } finally {
      await engine.dispose();
    }
  },
);
