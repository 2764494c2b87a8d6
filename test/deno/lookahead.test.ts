/**
 * Lookahead (several decode steps submitted before one readback) never changes what a
 * request produces: the same tokens for lookahead 1, 4 and 16, greedy and seeded; a stop
 * string or an end-of-generation token inside a window cuts at exactly the token that
 * lookahead 1 cuts at; aborting in the middle of a window ends that stream at once and
 * leaves the other requests of the batch as they would have been.
 *
 * Runs on every backend of support/backends.ts (the CPU reference, Deno's WebGPU, Dawn).
 * Expected values are never written by hand: they come from lookahead 1, from an
 * unstopped run of the same engine, or from the CPU reference backend.
 *
 * Windows: the first token of a request is read back alone (as soon as the prompt is
 * processed); then lookahead L reads back tokens 1..L, L+1..2L, … together. Index 6 is
 * inside the second window of lookahead 4 (5..8) and the first of lookahead 16 (1..16).
 */
import assert from "node:assert/strict";
import { readFile, stat } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { type Engine, type EngineOptions, loadEngine } from "../../src/engine/engine.ts";
import { RequestAbortedError } from "../../src/engine/errors.ts";
import type { GenerateOptions, GenerationResult } from "../../src/engine/types.ts";
import { syntheticModelPath } from "../node/support/fixtures.ts";
import { BACKENDS, type TestBackend } from "./support/backends.ts";

const MODEL = await syntheticModelPath("llama", "Q8_0");
const EMBEDDED = fileURLToPath(new URL("../../models/tiny-fortunes-q8_0.gguf", import.meta.url));
const HAS_EMBEDDED = await stat(EMBEDDED).then(() => true, () => false);
const LOOKAHEADS = [1, 4, 16] as const;
const PROMPTS = ["The quick brown fox", "Once upon a time"] as const;

/** Greedy, and seeded with every sampling stage on (penalties use the token history). */
function settings(maxTokens: number): { greedy: GenerateOptions; seeded: GenerateOptions } {
  return {
    greedy: { temperature: 0, maxTokens, ignoreEos: true },
    seeded: {
      temperature: 0.9, topK: 20, topP: 0.9, minP: 0.02, repeatPenalty: 1.1, presencePenalty: 0.2, frequencyPenalty: 0.1,
      seed: 7, maxTokens, ignoreEos: true,
    },
  };
}

/** Tokens per request: enough for a full window of 16 and more, fewer on a slow device. */
const tokensFor = (backend: TestBackend): number => (backend.slow ? 12 : 24);

/** An unstopped generation, with where each token's text starts. */
interface Unstopped {
  readonly tokens: readonly number[];
  readonly text: string;
  /** offsets[i]: length of the text before token i, when chunks i-1..i+1 hold exactly their own token's text. */
  readonly offsets: readonly (number | undefined)[];
}

async function unstopped(engine: Engine, prompt: string, options: GenerateOptions): Promise<Unstopped> {
  const stream = engine.generate(prompt, options);
  const chunks: { id: number; text: string }[] = [];
  for await (const chunk of stream) {
    // One chunk per accepted token, plus a last one that only carries finishReason.
    if (chunk.tokens.length === 1) chunks.push({ id: chunk.tokens[0]!, text: chunk.text });
    else assert.equal(chunk.tokens.length, 0);
  }
  const result = await stream.result;
  assert.deepEqual(chunks.map((c) => c.id), result.tokens);
  const own = chunks.map((c) => c.text.length > 0 && c.text === engine.tokenizer.decode([c.id]));
  const offsets: (number | undefined)[] = [];
  let at = 0;
  for (let i = 0; i < chunks.length; i++) {
    offsets.push(i >= 1 && own[i - 1] && own[i] && own[i + 1] ? at : undefined);
    at += chunks[i]!.text.length;
  }
  assert.equal(at, result.text.length);
  return { tokens: result.tokens, text: result.text, offsets };
}

/** A token index inside a window of lookahead 4 and of 16 (not a window's first token) where `ok` holds. */
function tokenInsideWindows(run: Unstopped, ok: (k: number) => boolean): number {
  for (let k = 2; k < run.tokens.length - 1; k++) {
    if ((k - 1) % 4 === 0 || (k - 1) % 16 === 0) continue;
    if (run.offsets[k] !== undefined && ok(k)) return k;
  }
  throw new Error(`no token inside a lookahead window fits among ${JSON.stringify(run.tokens)}`);
}

/** The GGUF file at `path` with `tokenizer.ggml.eos_token_id` set to `id`. */
async function withEos(path: string, id: number): Promise<Uint8Array> {
  const bytes = new Uint8Array(await readFile(path));
  const key = new TextEncoder().encode("tokenizer.ggml.eos_token_id");
  // A GGUF key-value: u64 key length, the key, u32 value type (4 = UINT32), the value.
  const pattern = new Uint8Array(8 + key.length + 4);
  const view = new DataView(pattern.buffer);
  view.setBigUint64(0, BigInt(key.length), true);
  pattern.set(key, 8);
  view.setUint32(8 + key.length, 4, true);
  const found: number[] = [];
  for (let i = 0; i + pattern.length <= bytes.length; i++) {
    let j = 0;
    while (j < pattern.length && bytes[i + j] === pattern[j]) j++;
    if (j === pattern.length) found.push(i);
  }
  assert.equal(found.length, 1, `${path} holds tokenizer.ggml.eos_token_id as UINT32 once`);
  new DataView(bytes.buffer).setUint32(found[0]! + pattern.length, id, true);
  return bytes;
}

const tokensOf = (r: GenerationResult): number[] => [...r.tokens];

/** Greedy and seeded tokens of every prompt, by lookahead; the requests of one lookahead run together. */
async function tokensByLookahead(engine: Engine, maxTokens: number): Promise<Map<number, number[][]>> {
  const { greedy, seeded } = settings(maxTokens);
  const out = new Map<number, number[][]>();
  for (const lookahead of LOOKAHEADS) {
    const requests = PROMPTS.flatMap((p) => [greedy, seeded].map((o) => engine.generate(p, { ...o, lookahead })));
    out.set(lookahead, (await Promise.all(requests.map((r) => r.result))).map(tokensOf));
  }
  return out;
}

/** The CPU reference's greedy and seeded tokens (as tokensByLookahead lays them out), by token count. */
const cpuReference = new Map<number, Promise<number[][]>>();
function referenceTokens(maxTokens: number): Promise<number[][]> {
  let pending = cpuReference.get(maxTokens);
  if (!pending) {
    pending = (async () => {
      const cpu = await loadEngine(MODEL, { backend: "cpu", maxSequences: 4 });
      try {
        return (await tokensByLookahead(cpu, maxTokens)).get(1)!;
      } finally {
        await cpu.dispose();
      }
    })();
    cpuReference.set(maxTokens, pending);
  }
  return pending;
}

for (const backend of BACKENDS) {
  const base: EngineOptions = { ...backend.options, maxSequences: 4 };
  const maxTokens = tokensFor(backend);
  const { greedy } = settings(maxTokens);
  const name = (s: string) => `lookahead[${backend.name}]: ${s}`;

  Deno.test(name("the same tokens for every lookahead; stop strings and aborts inside a window"), async (t) => {
    const engine = await loadEngine(MODEL, base);
    try {
      let byLookahead!: Map<number, number[][]>;
      await t.step("lookahead 1, 4 and 16 give the same tokens, greedy and seeded", async () => {
        byLookahead = await tokensByLookahead(engine, maxTokens);
        const one = byLookahead.get(1)!;
        for (const runs of one) assert.equal(runs.length, maxTokens);
        assert.deepEqual(byLookahead.get(4), one);
        assert.deepEqual(byLookahead.get(16), one);
      });

      if (backend.options.backend !== "cpu") {
        await t.step("and they are the CPU reference's tokens, greedy and seeded, batched or alone", async () => {
          const reference = await referenceTokens(maxTokens);
          assert.deepEqual(byLookahead.get(1), reference);
          // Alone, a prompt is processed in a step of its own (fewer rows than the batch above).
          const alone = await engine.generate(PROMPTS[0], { ...greedy, lookahead: 4 }).result;
          assert.deepEqual(tokensOf(alone), reference[0]);
        });
      }

      await t.step("a stop string inside a window ends every lookahead at the same token", async () => {
        const prompt = PROMPTS[0];
        const full = await unstopped(engine, prompt, { ...greedy, lookahead: 1 });
        const piece = (i: number) => engine.tokenizer.decode([full.tokens[i]!]);
        // The text of tokens k and k+1, first found exactly where token k starts.
        const k = tokenInsideWindows(full, (i) => full.text.indexOf(piece(i) + piece(i + 1)) === full.offsets[i]);
        const stop = piece(k) + piece(k + 1);
        const expectedText = full.text.slice(0, full.offsets[k]);
        for (const lookahead of LOOKAHEADS) {
          const stream = engine.generate(prompt, { ...greedy, lookahead, stop: [stop] });
          let streamed = "";
          for await (const chunk of stream) streamed += chunk.text;
          const result = await stream.result;
          assert.equal(result.finishReason, "stop", `lookahead ${lookahead}`);
          assert.equal(result.text, expectedText, `lookahead ${lookahead}`);
          assert.equal(streamed, expectedText, `lookahead ${lookahead}`);
          // Tokens through the one that completes the stop string; ids sampled after it are dropped.
          assert.deepEqual(tokensOf(result), full.tokens.slice(0, k + 2), `lookahead ${lookahead}`);
          assert.equal(result.usage.completionTokens, k + 2);
        }
        // The KV entries of the dropped ids are not left behind for the next request on the slot.
        const again = await unstopped(engine, prompt, { ...greedy, lookahead: 16 });
        assert.deepEqual(again.tokens, full.tokens);
      });

      await t.step("an abort in the middle of a window ends that stream at once; the other request is untouched", async () => {
        const [promptA, promptB] = PROMPTS;
        const expectedB = byLookahead.get(1)![2]!; // greedy tokens of promptB
        const controller = new AbortController();
        const other = engine.generate(promptB, { ...greedy, lookahead: 16 });
        const stream = engine.generate(promptA, { ...greedy, maxTokens: 200, lookahead: 16, signal: controller.signal });
        let seen = 0;
        let afterAbort = 0;
        await assert.rejects(
          (async () => {
            for await (const chunk of stream) {
              if (controller.signal.aborted) afterAbort += chunk.tokens.length;
              seen += chunk.tokens.length;
              // Token 2 is the second of the first 16-token window: 14 more were read back with it.
              if (seen === 3) controller.abort();
            }
          })(),
          RequestAbortedError,
        );
        assert.equal(seen, 3, "no token is delivered after the abort");
        assert.equal(afterAbort, 0);
        await assert.rejects(stream.result, RequestAbortedError);
        assert.deepEqual(tokensOf(await other.result), expectedB);
        // The engine goes on as before. (The aborted request's slot is freed at the readback
        // after the abort, which a slow device may not have reached yet: check after this run.)
        assert.deepEqual(tokensOf(await engine.generate(promptB, { ...greedy, lookahead: 4 }).result), expectedB);
        assert.equal(engine.stats().active, 0);
        assert.equal(engine.stats().freeSlots, 4);
      });
    } finally {
      await engine.dispose();
    }
  });

  Deno.test(name("an end-of-generation token inside a window ends every lookahead at the same token"), async () => {
    const prompt = PROMPTS[1];
    // The unstopped output decides which id becomes the end-of-generation token.
    const plain = await loadEngine(MODEL, base);
    let full: Unstopped;
    let isEog: (id: number) => boolean;
    try {
      full = await unstopped(plain, prompt, { ...greedy, lookahead: 1 });
      isEog = (id) => plain.tokenizer.isEog(id);
    } finally {
      await plain.dispose();
    }
    const k = tokenInsideWindows(full, (i) => full.tokens.slice(0, i + 1).every((id, j) => !isEog(id) && (j === i || id !== full.tokens[i])));
    const eos = full.tokens[k]!;
    const engine = await loadEngine(await withEos(MODEL, eos), base);
    try {
      assert.ok(engine.tokenizer.isEog(eos));
      for (const lookahead of LOOKAHEADS) {
        const result = await engine.generate(prompt, { ...greedy, ignoreEos: false, lookahead }).result;
        assert.equal(result.finishReason, "stop", `lookahead ${lookahead}`);
        // The end-of-generation token itself is not part of the result.
        assert.deepEqual(tokensOf(result), full.tokens.slice(0, k), `lookahead ${lookahead}`);
        assert.equal(result.text, full.text.slice(0, full.offsets[k]), `lookahead ${lookahead}`);
      }
      // With ignoreEos the same engine goes past it, as the unpatched model did.
      const past = await engine.generate(prompt, { ...greedy, lookahead: 16 }).result;
      assert.deepEqual(tokensOf(past), full.tokens);
    } finally {
      await engine.dispose();
    }
  });

  Deno.test({
    name: name("the embedded model gives the same tokens for lookahead 1, 4 and 16"),
    ignore: !HAS_EMBEDDED,
    async fn() {
      const engine = await loadEngine(EMBEDDED, base);
      try {
        const n = backend.slow ? 12 : 32;
        const { greedy: g, seeded: s } = settings(n);
        const runs: number[][][] = [];
        for (const lookahead of LOOKAHEADS) {
          const requests = [g, s].map((o) => engine.generate("A fortune: ", { ...o, lookahead }));
          runs.push((await Promise.all(requests.map((r) => r.result))).map(tokensOf));
        }
        assert.equal(runs[0]![0]!.length, n);
        assert.deepEqual(runs[1], runs[0]);
        assert.deepEqual(runs[2], runs[0]);
      } finally {
        await engine.dispose();
      }
    },
  });
}
