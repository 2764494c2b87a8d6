// llama.cpp's side of bench/compare.ts: prefill and decode speed of one GGUF file through
// node-llama-cpp's prebuilt binaries, timed the way `deno task cli bench` times ours.
//
//   node bench/llamacpp-bench.mjs --model FILE [--prompt-tokens 128] [--gen-tokens 64]
//        [--repetitions 3] [--gpu cpu|vulkan|cuda] [--threads N (default: the cores)]
//
// Prints one JSON line: load_ms, prefill_tok_s, decode_tok_s, ttft_ms (medians over the
// repetitions, after one warm-up), spread (median/min/max of each), and what ran (gpu,
// device names, threads). As in ours: "prefill" is the prompt's tokens over the time to the
// first generated token, "decode" the remaining gen-1 tokens over the time after it; the
// end-of-sequence token is ignored.
//
// NODE_LLAMA_CPP names the module to import (default `node-llama-cpp`): on a GPU machine the
// Vulkan build may be unpacked elsewhere (see ../shared/tools/llamacpp-vulkan/).
import { parseArgs } from "node:util";
import { availableParallelism } from "node:os";
import { performance } from "node:perf_hooks";

const { values: opts } = parseArgs({
  options: {
    model: { type: "string" },
    "prompt-tokens": { type: "string", default: "128" },
    "gen-tokens": { type: "string", default: "64" },
    repetitions: { type: "string", default: "3" },
    gpu: { type: "string", default: "cpu" },
    threads: { type: "string" },
  },
});

/** A positive whole number from a flag, or exit 2 naming it. */
function whole(name, min = 1) {
  const n = Number(opts[name]);
  if (!Number.isInteger(n) || n < min) {
    console.error(`--${name} must be a whole number ≥ ${min}, got ${opts[name]}`);
    process.exit(2);
  }
  return n;
}

if (!opts.model) {
  console.error("--model FILE is required");
  process.exit(2);
}
if (!["cpu", "vulkan", "cuda", "metal"].includes(opts.gpu)) {
  console.error(`--gpu must be cpu, vulkan, cuda or metal, got ${opts.gpu}`);
  process.exit(2);
}
const promptTokens = whole("prompt-tokens");
const genTokens = whole("gen-tokens", 2);
const repetitions = whole("repetitions");
// node-llama-cpp's own default can exceed the cores (4 on this 2-core machine), and ggml's
// spinning threads then fight each other: decode fell 400-fold here.
const threads = opts.threads === undefined ? availableParallelism() : whole("threads");
const onGpu = opts.gpu !== "cpu";

/** Median, min and max of a non-empty list. */
function spread(values) {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return { median: s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2, min: s[0], max: s[s.length - 1] };
}

/**
 * `n` prompt ids: the same sentence ours repeats (src/cli/commands/bench.ts), tokenized by
 * llama.cpp, BOS first where the model has one. Speed does not depend on which ids they
 * are, but real text keeps both sides on ordinary tokens.
 */
function promptIds(model, n) {
  const text = "The old lighthouse keeper counted the ships that passed in the night, one by one, and wrote their names in a book. ";
  let piece = Array.from(model.tokenize(text));
  if (piece.length === 0) piece = Array.from({ length: 64 }, (_, i) => i);
  const ids = model.tokens.bos === null || model.tokens.bos === undefined ? [] : [model.tokens.bos];
  while (ids.length < n) ids.push(...piece);
  return ids.slice(0, n);
}

/** One timed generation on a clean sequence: ms to the first token, and ms for the rest. */
async function generate(sequence, ids, gen) {
  await sequence.clearHistory();
  const start = performance.now();
  const it = sequence.evaluate(ids, { temperature: 0 });
  try {
    const first = await it.next();
    if (first.done) throw new Error("llama.cpp produced no token");
    const firstMs = performance.now() - start;
    let produced = 1;
    while (produced < gen) {
      const r = await it.next();
      if (r.done) break;
      produced++;
    }
    return { firstMs, restMs: performance.now() - start - firstMs, decoded: produced - 1 };
  } finally {
    await it.return?.();
  }
}

const { getLlama, LlamaLogLevel } = await import(process.env.NODE_LLAMA_CPP ?? "node-llama-cpp");
const loadStart = performance.now();
const llama = await getLlama({ gpu: onGpu ? opts.gpu : false, build: "never", logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath: opts.model, gpuLayers: onGpu ? "max" : 0 });
const contextSize = promptTokens + genTokens + 16;
const context = await model.createContext({
  contextSize,
  batchSize: Math.min(512, contextSize),
  sequences: 1,
  threads,
});
const sequence = context.getSequence();
const loadMs = performance.now() - loadStart;
try {
  const ids = promptIds(model, promptTokens);
  await generate(sequence, ids.slice(0, Math.min(16, ids.length)), 4); // warm-up: first use builds GPU pipelines
  const runs = [];
  for (let i = 0; i < repetitions; i++) {
    const r = await generate(sequence, ids, genTokens);
    runs.push({
      prefill: (ids.length / r.firstMs) * 1000,
      decode: (r.decoded / Math.max(1e-6, r.restMs)) * 1000,
      ttft: r.firstMs,
    });
  }
  const s = {
    prefill_tok_s: spread(runs.map((r) => r.prefill)),
    decode_tok_s: spread(runs.map((r) => r.decode)),
    ttft_ms: spread(runs.map((r) => r.ttft)),
  };
  const devices = onGpu ? await llama.getGpuDeviceNames().catch(() => []) : [];
  console.log(JSON.stringify({
    engine: "llama.cpp",
    backend: llama.gpu === false ? "cpu" : llama.gpu,
    adapter: devices.length > 0 ? devices.join(", ") : `CPU, ${context.currentThreads} threads`,
    threads: context.currentThreads,
    prompt_tokens: ids.length,
    gen_tokens: genTokens,
    repetitions,
    load_ms: loadMs,
    prefill_tok_s: s.prefill_tok_s.median,
    decode_tok_s: s.decode_tok_s.median,
    ttft_ms: s.ttft_ms.median,
    spread: s,
  }));
} finally {
  await context.dispose();
  await model.dispose();
  await llama.dispose();
}
