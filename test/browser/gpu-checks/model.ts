/**
 * The whole model on the GPU runner in the page: a GGUF read over HTTP (range requests),
 * uploaded, and run over a short prompt. Only the logits come back; the spec compares them
 * with the CPU reference (src/model/reference.ts) computed in Node on the same file.
 */
import { openGGUF } from "../../../src/gguf/reader.ts";
import { GpuRunner } from "../../../src/model/gpu-runner.ts";
import type { ModelReport } from "./api.ts";

/** The logits after each of `tokens`, fed in one call from position 0 of slot 0. */
export async function runModel(url: string, tokens: readonly number[]): Promise<ModelReport> {
  const began = performance.now();
  const file = await openGGUF(new URL(url, location.href).href);
  try {
    // One slot and a context just past the prompt: SwiftShader pays for every position.
    const runner = await GpuRunner.load(file, {
      maxSlots: 1,
      maxBatchTokens: tokens.length,
      contextLength: tokens.length + 1,
      logitRows: tokens.length,
    });
    const loaded = performance.now();
    try {
      runner.resetSlot(0);
      const logits = await runner.logits(0, 0, tokens);
      const runMs = performance.now() - loaded;
      await runner.dispose();
      return {
        description: runner.description,
        logits: logits.map((row) => Array.from(row)),
        loadMs: loaded - began,
        runMs,
        liveBuffersAfterDispose: runner.memory().liveBuffers,
      };
    } catch (error) {
      await runner.dispose();
      throw error;
    }
  } finally {
    await file.close();
  }
}
