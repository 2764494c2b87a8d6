/**
 * Builders shared by the GGUF tests: a seeded PRNG, random tensor bytes, a spec holding
 * every metadata type, and tiny but complete llama / qwen2 / qwen3 models that llama.cpp
 * loads (a byte-level GPT-2 vocabulary, F32 norms, Q8_0 and F16 matrices).
 */
import { BLOCK_LAYOUTS, GGMLType, tensorByteLength } from "../../../src/gguf/ggml-type.ts";
import { GGUFValueType } from "../../../src/gguf/metadata.ts";
import { type GGUFSpec, type MetaEntry, meta, type TensorSpec } from "../../../src/gguf/writer.ts";
import { type Architecture, layerTensorNames } from "../../../src/model/config.ts";

/** mulberry32: a small, fixed-seed PRNG; uniform in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Random bytes of the right length for a tensor of `type` and `shape`. */
export function randomTensor(rand: () => number, name: string, type: GGMLType, shape: number[]): TensorSpec {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Uint8Array(tensorByteLength(type, n));
  for (let i = 0; i < data.length; i++) data[i] = Math.floor(rand() * 256);
  return { name, type, shape, data };
}

/**
 * Tensor bytes that are valid numbers: random f32 in [-scale, scale) for F32, the same
 * rounded to f16 for F16 and Q8_0 blocks with a small f16 scale, so llama.cpp can run it.
 */
export function numericTensor(rand: () => number, name: string, type: GGMLType, shape: number[], scale = 0.1): TensorSpec {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Uint8Array(tensorByteLength(type, n));
  const view = new DataView(data.buffer);
  if (type === GGMLType.F32) {
    for (let i = 0; i < n; i++) view.setFloat32(4 * i, (rand() * 2 - 1) * scale, true);
  } else if (type === GGMLType.F16) {
    // Exponent 0b01010..0b01011 (2^-5 .. 2^-4 range) with random mantissa and sign.
    for (let i = 0; i < n; i++) view.setUint16(2 * i, (rand() < 0.5 ? 0x8000 : 0) | 0x2800 | Math.floor(rand() * 0x800), true);
  } else if (type === GGMLType.Q8_0) {
    const layout = BLOCK_LAYOUTS.get(type);
    if (!layout) throw new Error("no Q8_0 layout");
    for (let b = 0; b < n / layout.blockSize; b++) {
      const at = b * layout.typeSize;
      view.setUint16(at, 0x1c00, true); // f16 2^-8: the block's scale
      for (let j = 0; j < 32; j++) view.setInt8(at + 2 + j, Math.floor(rand() * 255) - 127);
    }
  } else {
    throw new Error(`numericTensor: ${type} not handled`);
  }
  return { name, type, shape, data };
}

/** One entry per GGUF value type, scalars and arrays, with values each type holds exactly. */
export function everyMetadataType(): Array<[string, MetaEntry]> {
  return [
    ["t.u8", meta.u8(255)],
    ["t.i8", meta.i8(-128)],
    ["t.u16", meta.u16(65535)],
    ["t.i16", meta.i16(-32768)],
    ["t.u32", meta.u32(4294967295)],
    ["t.i32", meta.i32(-2147483648)],
    ["t.u64", meta.u64(18446744073709551615n)],
    ["t.i64", meta.i64(-9223372036854775808n)],
    ["t.f32", meta.f32(-1.5)],
    ["t.f64", meta.f64(Math.PI)],
    ["t.bool_true", meta.bool(true)],
    ["t.bool_false", meta.bool(false)],
    ["t.str", meta.str("héllo, wörld ✓ 🙂")],
    ["t.str_empty", meta.str("")],
    ["t.strs", meta.strs(["a", "", "ß", "<|im_start|>"])],
    ["t.u8s", meta.u8s([0, 1, 255])],
    ["t.i32s", meta.i32s([-1, 0, 2147483647])],
    ["t.u32s", meta.u32s([0, 4294967295])],
    ["t.f32s", meta.f32s([0.25, -2, Math.fround(1e-6)])],
    ["t.bools", meta.bools([true, false])],
    ["t.i16s", meta.array(GGUFValueType.INT16, [-5, 5])],
    ["t.u64s", meta.array(GGUFValueType.UINT64, [0n, 18446744073709551615n])],
    ["t.f64s", meta.array(GGUFValueType.FLOAT64, [0.1, -0.2])],
    ["t.i8s", meta.array(GGUFValueType.INT8, [-128, 127])],
    ["t.u16s", meta.array(GGUFValueType.UINT16, [0, 65535])],
    ["t.i64s", meta.array(GGUFValueType.INT64, [-1n, 9223372036854775807n])],
    ["t.empty", meta.strs([])],
  ];
}

/** GPT-2's printable stand-in for each byte (its byte-level BPE alphabet). */
export function byteTokens(): string[] {
  const printable = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  let next = 256;
  return Array.from({ length: 256 }, (_, b) => String.fromCodePoint(printable(b) ? b : next++));
}

/** Shape and content options of {@link tinyModelSpec}. */
export interface TinyModelOptions {
  readonly arch?: Architecture;
  readonly nLayers?: number;
  readonly nEmbd?: number;
  readonly nHeads?: number;
  readonly nKvHeads?: number;
  readonly nFf?: number;
  readonly contextLength?: number;
  readonly tied?: boolean;
  readonly matrixType?: GGMLType;
  readonly seed?: number;
  /** Extra metadata, appended after the standard keys. */
  readonly extra?: Array<[string, MetaEntry]>;
}

/**
 * A complete tiny model: 256 byte tokens plus `<s>` and `</s>`, every tensor the
 * architecture needs, with values llama.cpp can evaluate.
 */
export function tinyModelSpec(options: TinyModelOptions = {}): GGUFSpec {
  const arch = options.arch ?? "llama";
  const nEmbd = options.nEmbd ?? 64;
  const nHeads = options.nHeads ?? 4;
  const nKv = options.nKvHeads ?? 2;
  const nFf = options.nFf ?? 96;
  const nLayers = options.nLayers ?? 2;
  const headDim = nEmbd / nHeads;
  const mat = options.matrixType ?? GGMLType.Q8_0;
  const rand = prng(options.seed ?? 1);
  const tokens = [...byteTokens(), "<s>", "</s>"];
  const vocab = tokens.length;
  const tensors: TensorSpec[] = [
    numericTensor(rand, "token_embd.weight", GGMLType.F32, [nEmbd, vocab]),
    numericTensor(rand, "output_norm.weight", GGMLType.F32, [nEmbd], 1),
  ];
  if (!options.tied) tensors.push(numericTensor(rand, "output.weight", mat, [nEmbd, vocab]));
  for (let l = 0; l < nLayers; l++) {
    const n = layerTensorNames(l);
    tensors.push(
      numericTensor(rand, n.attnNorm, GGMLType.F32, [nEmbd], 1),
      numericTensor(rand, n.q, mat, [nEmbd, nHeads * headDim]),
      numericTensor(rand, n.k, mat, [nEmbd, nKv * headDim]),
      numericTensor(rand, n.v, mat, [nEmbd, nKv * headDim]),
      numericTensor(rand, n.o, mat, [nHeads * headDim, nEmbd]),
      numericTensor(rand, n.ffnNorm, GGMLType.F32, [nEmbd], 1),
      numericTensor(rand, n.gate, mat, [nEmbd, nFf]),
      numericTensor(rand, n.up, mat, [nEmbd, nFf]),
      numericTensor(rand, n.down, mat, [nFf, nEmbd]),
    );
    if (arch === "qwen2") {
      tensors.push(
        numericTensor(rand, n.qBias, GGMLType.F32, [nHeads * headDim]),
        numericTensor(rand, n.kBias, GGMLType.F32, [nKv * headDim]),
        numericTensor(rand, n.vBias, GGMLType.F32, [nKv * headDim]),
      );
    }
    if (arch === "qwen3") {
      tensors.push(
        numericTensor(rand, n.qNorm, GGMLType.F32, [headDim], 1),
        numericTensor(rand, n.kNorm, GGMLType.F32, [headDim], 1),
      );
    }
  }
  const metadata: Array<[string, MetaEntry]> = [
    ["general.architecture", meta.str(arch)],
    ["general.name", meta.str(`tiny-${arch}`)],
    [`${arch}.block_count`, meta.u32(nLayers)],
    [`${arch}.context_length`, meta.u32(options.contextLength ?? 128)],
    [`${arch}.embedding_length`, meta.u32(nEmbd)],
    [`${arch}.feed_forward_length`, meta.u32(nFf)],
    [`${arch}.attention.head_count`, meta.u32(nHeads)],
    [`${arch}.attention.head_count_kv`, meta.u32(nKv)],
    [`${arch}.attention.layer_norm_rms_epsilon`, meta.f32(1e-5)],
    [`${arch}.rope.freq_base`, meta.f32(10000)],
    ["tokenizer.ggml.model", meta.str("gpt2")],
    ["tokenizer.ggml.pre", meta.str("default")],
    ["tokenizer.ggml.tokens", meta.strs(tokens)],
    ["tokenizer.ggml.token_type", meta.i32s([...Array<number>(256).fill(1), 3, 3])],
    ["tokenizer.ggml.merges", meta.strs([])],
    ["tokenizer.ggml.bos_token_id", meta.u32(256)],
    ["tokenizer.ggml.eos_token_id", meta.u32(257)],
    ...(options.extra ?? []),
  ];
  return { metadata, tensors };
}
