/**
 * Benchmark script (not a test): what a constrained decode step costs against an
 * unconstrained one (issue 19).
 *
 *   deno run -A bench/constrained.ts [--model M] [--tokens 64] [--runs 3]
 *       [--backend webgpu|cpu] [--webgpu auto|dawn|deno] [--json]
 *
 * Three generations of `--tokens` tokens from the same prompt and seed (end-of-generation
 * ignored, so each runs its full length), median over `--runs` after one warm-up:
 * - `free`: unconstrained, default lookahead (several tokens per readback);
 * - `free, lookahead 1`: unconstrained, one token per readback (what a mask forces);
 * - `grammar`: a GBNF grammar (`[a-z ,.]{1000}`, longer than the run), one token per readback
 *   with the mask computed on the CPU, uploaded, applied by the token-mask kernel.
 * So `free, lookahead 1` − `free` is the cost of the lost lookahead and `grammar` −
 * `free, lookahead 1` is the mask's (computation + upload + kernel). The mask computation
 * alone is timed by replaying the grammar run's tokens through a matcher.
 */
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { loadEngine } from "../src/engine/engine.ts";
import type { GenerateOptions } from "../src/engine/types.ts";
import { grammarVocabulary, TokenGrammar } from "../src/grammar/index.ts";

const DEFAULT_MODEL = fileURLToPath(new URL("../models/tiny-fortunes-q8_0.gguf", import.meta.url));
const PROMPT = "Once upon a time";
// 1000 characters: longer than any --tokens run writes, so the grammar never ends it early.
const GRAMMAR = 'root ::= [a-z ,.]{1000}';

const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    model: { type: "string", default: DEFAULT_MODEL },
    tokens: { type: "string", default: "64" },
    runs: { type: "string", default: "3" },
    backend: { type: "string", default: "webgpu" },
    webgpu: { type: "string", default: "auto" },
    json: { type: "boolean", default: false },
  },
});
const tokens = Number(args.tokens);
const runs = Number(args.runs);
if (!Number.isInteger(tokens) || tokens < 2) throw new Error(`--tokens ${args.tokens}: give an integer ≥ 2`);
if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs ${args.runs}: give an integer ≥ 1`);

const median = (xs: readonly number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const engine = await loadEngine(args.model, {
  backend: args.backend as "webgpu" | "cpu",
  webgpu: args.webgpu as "auto" | "dawn" | "deno",
  maxSequences: 1,
});
try {
  const base: GenerateOptions = { temperature: 0.8, seed: 1, maxTokens: tokens, ignoreEos: true };
  const configs: { name: string; options: GenerateOptions }[] = [
    { name: "free", options: base },
    { name: "free, lookahead 1", options: { ...base, lookahead: 1 } },
    { name: "grammar", options: { ...base, grammar: GRAMMAR } },
  ];
  const rows: { name: string; msPerToken: number; spread: [number, number]; tokens: number }[] = [];
  let grammarTokens: readonly number[] = [];
  for (const { name, options } of configs) {
    await engine.generate(PROMPT, options).result; // warm-up: compiles, grammar cache
    const ms: number[] = [];
    let n = 0;
    for (let r = 0; r < runs; r++) {
      const result = await engine.generate(PROMPT, options).result;
      n = result.tokens.length;
      ms.push(result.timings.decodeMs / Math.max(1, n - 1));
      if (name === "grammar") grammarTokens = result.tokens;
    }
    rows.push({ name, msPerToken: median(ms), spread: [Math.min(...ms), Math.max(...ms)], tokens: n });
  }

  // The mask computation alone: the same tokens replayed through the grammar's matcher.
  const grammar = TokenGrammar.fromGbnf(GRAMMAR, grammarVocabulary(engine.tokenizer));
  const bits = new Uint32Array(grammar.maskWords);
  const maskMs: number[] = [];
  for (let r = 0; r < Math.max(runs, 3); r++) {
    const matcher = grammar.matcher();
    const start = performance.now();
    for (const id of grammarTokens) {
      matcher.fillNextTokenMask(bits);
      if (!matcher.acceptToken(id)) throw new Error(`token ${id} of the grammar run is outside the grammar`);
    }
    maskMs.push((performance.now() - start) / grammarTokens.length);
  }

  const free = rows[0]!.msPerToken;
  const single = rows[1]!.msPerToken;
  const constrained = rows[2]!.msPerToken;
  const summary = {
    runner: engine.description,
    vocabulary: engine.tokenizer.vocabSize,
    tokens,
    runs,
    rows,
    maskComputeMsPerToken: median(maskMs),
    lostLookaheadMsPerToken: single - free,
    maskMsPerToken: constrained - single,
    constrainedOverFree: constrained / free,
  };
  if (args.json) {
    console.log(JSON.stringify(summary, null, 2));
  } else {
    console.log(`runner: ${summary.runner}; vocabulary ${summary.vocabulary}; ${tokens} tokens, median of ${runs} runs (min..max)`);
    for (const r of rows) console.log(`  ${r.name.padEnd(18)} ${r.msPerToken.toFixed(2)} ms/token (${r.spread.map((v) => v.toFixed(2)).join("..")}), ${r.tokens} tokens`);
    console.log(`  mask computation (CPU, replayed): ${(summary.maskComputeMsPerToken * 1000).toFixed(0)} µs/token`);
    console.log(`  lost lookahead: ${summary.lostLookaheadMsPerToken.toFixed(2)} ms/token; mask (compute + upload + kernel): ${summary.maskMsPerToken.toFixed(2)} ms/token`);
    console.log(`  constrained / free: ${summary.constrainedOverFree.toFixed(2)}×`);
  }
} finally {
  await engine.dispose();
}
