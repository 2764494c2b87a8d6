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
 * A llama.cpp context for exact comparisons: F32 KV cache, and flash attention off (its CPU
 * kernel rounds through F16, which moves logits by about 1e-2 even with an F32 cache;
 * measured here: 4e-3..1e-2 with it, 4e-6..7e-6 without). One thread: on a shared 2-core
 * machine ggml's spinning worker threads made a 9-token evaluation take 1.7 s instead of 9 ms.
 */
export function createExactContext(model: LlamaModel, contextSize: number): Promise<LlamaContext> {
  return model.createContext({
    contextSize,
    sequences: 4,
    batchSize: contextSize,
    threads: 1,
    flashAttention: false,
    experimentalKvCacheKeyType: "F32",
    experimentalKvCacheValueType: "F32",
  });
}

/** Sampling options under which node-llama-cpp reports the logits unchanged (no temperature, no filters). */
const RAW_LOGITS = { temperature: 1, topK: 0, topP: 1, minP: 0 } as const;

/**
 * llama.cpp's full-vocabulary logits after each of `ids` (teacher forcing), from an empty
 * sequence, indexed by token id. node-llama-cpp returns them as a Map sorted by value, so
 * they are put back in token order here. `ids` should include BOS where the model expects one.
 */
export async function llamaCppLogits(context: LlamaContext, ids: readonly number[], vocabSize: number): Promise<Float32Array[]> {
  const sequence = context.getSequence();
  try {
    const input: ControlledEvaluateInputItem[] = ids.map((t) => [t as Token, { generateNext: { logits: true, options: RAW_LOGITS } }]);
    const results = await sequence.controlledEvaluate(input);
    return ids.map((_, i) => {
      const logits = results[i]?.next.logits;
      if (!logits) throw new Error(`llama.cpp returned no logits at position ${i}`);
      if (logits.size !== vocabSize) throw new Error(`llama.cpp returned ${logits.size} logits at position ${i}, expected ${vocabSize}`);
      const out = new Float32Array(vocabSize).fill(Number.NaN);
      for (const [token, value] of logits) out[token] = value;
      return out;
    });
  } finally {
    sequence.dispose();
  }
}
