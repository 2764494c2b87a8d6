/**
 * llama.cpp (through node-llama-cpp's prebuilt CPU build) as an independent reference.
 * One `Llama` instance per test process; models and contexts are disposed by the caller.
 */
import {
  type ControlledEvaluateInputItem,
  getLlama,
  type Llama,
  type LlamaContext,
  LlamaLogLevel,
  type LlamaModel,
  type Token,
} from "node-llama-cpp";

let llamaPromise: Promise<Llama> | undefined;

/** The shared CPU-only llama.cpp instance (never Vulkan: here that would be lavapipe). */
export function llamaCpp(): Promise<Llama> {
  llamaPromise ??= getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
  return llamaPromise;
}

/** Loads a GGUF file with llama.cpp. */
export async function loadLlamaCppModel(path: string): Promise<LlamaModel> {
  const llama = await llamaCpp();
  return llama.loadModel({ modelPath: path, gpuLayers: 0 });
}

/**
 * A context with an F32 KV cache, so logits can be compared exactly (the default F16
 * cache moves them by about 1e-3).
 */
export function createExactContext(model: LlamaModel, contextSize: number): Promise<LlamaContext> {
  return model.createContext({
    contextSize,
    sequences: 4,
    batchSize: contextSize,
    experimentalKvCacheKeyType: "F32",
    experimentalKvCacheValueType: "F32",
  });
}

/**
 * Full-vocabulary logits at every position of `ids` (teacher forcing), as llama.cpp
 * computes them. `ids` should include BOS where the model expects one.
 */
export async function llamaCppLogits(context: LlamaContext, ids: readonly number[]): Promise<Float32Array[]> {
  const sequence = context.getSequence();
  try {
    const input: ControlledEvaluateInputItem[] = ids.map((t) => [
      t as Token,
      { generateNext: { logits: true, options: { temperature: 0 } } },
    ]);
    const results = await sequence.controlledEvaluate(input);
    return ids.map((_, i) => {
      const logits = results[i]?.next.logits;
      if (!logits) throw new Error(`llama.cpp returned no logits at position ${i}`);
      return Float32Array.from(logits);
    });
  } finally {
    sequence.dispose();
  }
}
