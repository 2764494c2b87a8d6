/**
 * The smallest llama-architecture GGUF that llama.cpp loads: one layer of random F32
 * weights around any tokenizer metadata, for tests that only need llama.cpp's vocabulary
 * code (tokenize, detokenize) on a vocabulary of their choosing.
 */
import { GGMLType } from "../../../src/gguf/ggml-type.ts";
import { type MetaEntry, meta, type TensorSpec, writeGGUFFile } from "../../../src/gguf/writer.ts";

/** Shape of the tiny model (defaults are as small as llama.cpp allows comfortably). */
export interface TinyModelShape {
  readonly nEmbd?: number;
  readonly nFf?: number;
  readonly nHeads?: number;
  readonly contextLength?: number;
}

/** F32 bytes of `n` small pseudo-random values (a fixed LCG: the values do not matter). */
function randomF32(n: number, seed: number): Uint8Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 32 - 0.5) * 0.1;
  }
  return new Uint8Array(out.buffer);
}

function onesF32(n: number): Uint8Array {
  return new Uint8Array(new Float32Array(n).fill(1).buffer);
}

/**
 * Writes a one-layer llama model whose vocabulary comes from `tokenizer` (the
 * `tokenizer.*` entries; its token count sets the embedding size) to `path`.
 */
export async function writeTinyLlamaModel(
  path: string,
  tokenizer: readonly (readonly [string, MetaEntry])[],
  shape: TinyModelShape = {},
): Promise<void> {
  const tokens = tokenizer.find(([k]) => k === "tokenizer.ggml.tokens")?.[1].value;
  if (!Array.isArray(tokens)) throw new Error("tokenizer metadata has no tokenizer.ggml.tokens");
  const nVocab = tokens.length;
  const nEmbd = shape.nEmbd ?? 16;
  const nFf = shape.nFf ?? 32;
  const nHeads = shape.nHeads ?? 2;
  const metadata: (readonly [string, MetaEntry])[] = [
    ["general.architecture", meta.str("llama")],
    ["general.name", meta.str("tiny tokenizer test model")],
    ["llama.block_count", meta.u32(1)],
    ["llama.context_length", meta.u32(shape.contextLength ?? 256)],
    ["llama.embedding_length", meta.u32(nEmbd)],
    ["llama.feed_forward_length", meta.u32(nFf)],
    ["llama.attention.head_count", meta.u32(nHeads)],
    ["llama.attention.head_count_kv", meta.u32(nHeads)],
    ["llama.attention.layer_norm_rms_epsilon", meta.f32(1e-5)],
    ["llama.rope.dimension_count", meta.u32(nEmbd / nHeads)],
    ...tokenizer,
  ];
  let seed = 1;
  const f32 = (name: string, dims: number[], ones = false): TensorSpec => {
    const n = dims.reduce((a, b) => a * b, 1);
    const s = seed++;
    return { name, type: GGMLType.F32, shape: dims, data: () => (ones ? onesF32(n) : randomF32(n, s)) };
  };
  const tensors: TensorSpec[] = [
    f32("token_embd.weight", [nEmbd, nVocab]),
    f32("blk.0.attn_norm.weight", [nEmbd], true),
    f32("blk.0.attn_q.weight", [nEmbd, nEmbd]),
    f32("blk.0.attn_k.weight", [nEmbd, nEmbd]),
    f32("blk.0.attn_v.weight", [nEmbd, nEmbd]),
    f32("blk.0.attn_output.weight", [nEmbd, nEmbd]),
    f32("blk.0.ffn_norm.weight", [nEmbd], true),
    f32("blk.0.ffn_gate.weight", [nEmbd, nFf]),
    f32("blk.0.ffn_up.weight", [nEmbd, nFf]),
    f32("blk.0.ffn_down.weight", [nFf, nEmbd]),
    f32("output_norm.weight", [nEmbd], true),
  ];
  await writeGGUFFile(path, { metadata, tensors });
}
