/**
 * Expected outputs for the browser tests, computed independently of the page: the engine's
 * CPU reference backend, in this Node process, on the same model file the page loads.
 */
import { loadEngine } from "../../../src/engine/engine.ts";
import type { GenerateInput, GenerateOptions, GenerationResult } from "../../../src/engine/types.ts";

/** What the engine generates for `input` on the CPU backend. */
export async function cpuGeneration(model: string, input: GenerateInput, options: GenerateOptions): Promise<GenerationResult> {
  const engine = await loadEngine(model, { backend: "cpu", maxSequences: 1 });
  try {
    return await engine.generate(input, options).result;
  } finally {
    await engine.dispose();
  }
}
