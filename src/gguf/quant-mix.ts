/**
 * File-level quantization "mixes" as llama.cpp's `llama-quantize` names them, and the
 * per-tensor type each one picks (after llama.cpp's `llama_tensor_get_type` in
 * src/llama-quant.cpp, for dense llama-style models).
 */
import { InvalidArgumentError } from "../errors.ts";
import { BLOCK_LAYOUTS, GGMLType } from "./ggml-type.ts";

/** The mixes this runtime can write. */
export type QuantMix = "F32" | "F16" | "BF16" | "Q8_0" | "Q4_0" | "Q4_K_M" | "Q6_K" | "IQ4_NL" | "IQ4_XS";

/** Every {@link QuantMix}, for CLIs and tests. */
export const QUANT_MIXES: readonly QuantMix[] = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_K_M", "Q6_K", "IQ4_NL", "IQ4_XS"];

/** llama.cpp's `LLAMA_FTYPE_*` value of each mix, stored as `general.file_type`. */
const FILE_TYPES: Readonly<Record<QuantMix, number>> = {
  F32: 0, // LLAMA_FTYPE_ALL_F32
  F16: 1, // LLAMA_FTYPE_MOSTLY_F16
  Q4_0: 2, // LLAMA_FTYPE_MOSTLY_Q4_0
  Q8_0: 7, // LLAMA_FTYPE_MOSTLY_Q8_0
  Q4_K_M: 15, // LLAMA_FTYPE_MOSTLY_Q4_K_M
  Q6_K: 18, // LLAMA_FTYPE_MOSTLY_Q6_K
  IQ4_NL: 25, // LLAMA_FTYPE_MOSTLY_IQ4_NL
  IQ4_XS: 30, // LLAMA_FTYPE_MOSTLY_IQ4_XS
  BF16: 32, // LLAMA_FTYPE_MOSTLY_BF16
};

/** The type most tensors of a mix get. */
const DEFAULT_TYPES: Readonly<Record<QuantMix, GGMLType>> = {
  F32: GGMLType.F32,
  F16: GGMLType.F16,
  BF16: GGMLType.BF16,
  Q8_0: GGMLType.Q8_0,
  Q4_0: GGMLType.Q4_0,
  Q4_K_M: GGMLType.Q4_K,
  Q6_K: GGMLType.Q6_K,
  IQ4_NL: GGMLType.IQ4_NL,
  IQ4_XS: GGMLType.IQ4_XS,
};

/**
 * What llama.cpp substitutes when a row length is not a multiple of a K-quant's 256:
 * a 32-value format of about the same size. Types not listed have no substitute there
 * (llama.cpp refuses the tensor); we fall back to F16 instead, as llama.cpp does when
 * even the substitute's 32 does not divide the row.
 */
const FALLBACKS: ReadonlyMap<GGMLType, GGMLType> = new Map([
  [GGMLType.Q2_K, GGMLType.Q4_0], // as llama.cpp now does (older releases chose IQ4_NL)
  [GGMLType.Q3_K, GGMLType.Q4_0],
  [GGMLType.Q4_K, GGMLType.Q5_0],
  [GGMLType.Q5_K, GGMLType.Q5_1],
  [GGMLType.Q6_K, GGMLType.Q8_0],
  [GGMLType.IQ4_XS, GGMLType.IQ4_NL],
]);

/** Options of {@link tensorTypeForMix}. */
export interface TensorTypeOptions {
  /**
   * The file has no `output.weight`, so `token_embd.weight` doubles as the output
   * projection and is quantized like it (llama.cpp's `has_output == false` case).
   */
  tiedEmbeddings?: boolean;
  /**
   * Query heads per KV head (llama.cpp's `n_gqa`); default 1. The IQ4 mixes give
   * `attn_v.weight` Q5_K from 4 up.
   */
  gqa?: number;
}

/** `general.file_type` (llama.cpp's `LLAMA_FTYPE`) for a mix. */
export function fileTypeOfMix(mix: QuantMix): number {
  return FILE_TYPES[mix];
}

/** True when `value` names a {@link QuantMix}. */
export function isQuantMix(value: string): value is QuantMix {
  return (QUANT_MIXES as readonly string[]).includes(value);
}

/**
 * llama.cpp's "use more bits" layers: the first and last eighth of the layers, and
 * every third layer in between. Q4_K_M gives their `attn_v` and `ffn_down` Q6_K.
 */
export function useMoreBits(layer: number, nLayers: number): boolean {
  // C integer division truncates; the operands are non-negative except layer − n/8,
  // which is ≥ 0 whenever the first condition is false.
  const eighth = Math.trunc(nLayers / 8);
  return layer < eighth || layer >= Math.trunc((7 * nLayers) / 8) || (layer - eighth) % 3 === 2;
}

/**
 * The GGML type a tensor gets in a file written with `mix`.
 *
 * - Tensors llama.cpp never quantizes stay F32 (what convert_hf_to_gguf.py writes for
 *   them): 1-D tensors (norms, biases; ggml counts dimensions without trailing 1s),
 *   names not ending in `weight`, `*_norm.weight`, `ffn_gate_inp.weight`,
 *   `position_embd.weight`, `token_types.weight`.
 * - F32 / F16 / BF16: every other tensor gets that type.
 * - Quantized mixes: the default type (Q4_0, Q8_0, Q4_K, Q6_K), except that
 *   `output.weight` (or `token_embd.weight` when tied) gets Q6_K — or Q8_0 when its row
 *   length is not a multiple of the default type's block, or the mix is Q8_0 — and,
 *   for Q4_K_M, `attn_v.weight` and `ffn_down` in {@link useMoreBits} layers get Q6_K
 *   and `attn_qkv.weight` Q5_K; for IQ4_NL and IQ4_XS (no importance matrix),
 *   `attn_v.weight` gets Q5_K when `options.gqa` ≥ 4 and `ffn_down` in the first eighth
 *   of the layers Q5_K.
 * - Row length `shape[0]` not a multiple of the chosen type's block: K-quants fall back
 *   to Q5_0 (Q4_K), Q5_1 (Q5_K), Q8_0 (Q6_K), Q4_0 (Q2_K, Q3_K), IQ4_NL (IQ4_XS), and to F16 when 32 does
 *   not divide the row either (llama.cpp refuses Q4_0/Q8_0 tensors there; F16 keeps the
 *   file writable).
 *
 * Not reproduced: llama.cpp's special cases for Falcon, MoE (n_expert ≥ 4), 70B models
 * and `--pure`; the layer index comes from the `blk.N.` prefix, which equals llama.cpp's
 * running count for the dense models this runtime runs.
 * @param shape GGML dimensions, innermost first (`ne`).
 */
export function tensorTypeForMix(
  mix: QuantMix,
  tensorName: string,
  shape: readonly number[],
  nLayers: number,
  options: TensorTypeOptions = {},
): GGMLType {
  if (!isQuantMix(mix)) throw new InvalidArgumentError("mix", `unknown quantization mix "${String(mix)}"`);
  if (!isQuantizable(tensorName, shape)) return GGMLType.F32;
  const base = DEFAULT_TYPES[mix];
  if (!isBlockQuantized(base)) return base;
  const rowLength = shape[0] ?? 1;
  return fitRow(preferredType(mix, base, tensorName, rowLength, nLayers, options), rowLength);
}

/** llama.cpp's rule for which tensors are quantized at all. */
function isQuantizable(name: string, shape: readonly number[]): boolean {
  if (ggmlDims(shape) < 2) return false;
  if (!name.endsWith("weight")) return false;
  if (name.includes("_norm.weight")) return false;
  if (name.includes("ffn_gate_inp.weight")) return false;
  return name !== "position_embd.weight" && name !== "token_types.weight";
}

/** ggml_n_dims: the dimension count without trailing size-1 dimensions (at least 1). */
function ggmlDims(shape: readonly number[]): number {
  let n = shape.length;
  while (n > 1 && shape[n - 1] === 1) n--;
  return Math.max(n, 1);
}

function isBlockQuantized(type: GGMLType): boolean {
  return (BLOCK_LAYOUTS.get(type)?.blockSize ?? 1) > 1;
}

function blockSizeOf(type: GGMLType): number {
  return BLOCK_LAYOUTS.get(type)?.blockSize ?? 1;
}

/** The type llama.cpp's heuristics pick before the row-length check. */
function preferredType(
  mix: QuantMix,
  base: GGMLType,
  name: string,
  rowLength: number,
  nLayers: number,
  options: TensorTypeOptions,
): GGMLType {
  const isOutput = name === "output.weight" || (options.tiedEmbeddings === true && name === "token_embd.weight");
  if (isOutput) {
    if (rowLength % blockSizeOf(base) !== 0) return GGMLType.Q8_0;
    return base === GGMLType.Q8_0 ? GGMLType.Q8_0 : GGMLType.Q6_K;
  }
  if (mix === "IQ4_NL" || mix === "IQ4_XS") return iq4Type(base, name, nLayers, options);
  if (mix !== "Q4_K_M") return base;
  if (name.includes("attn_v.weight")) {
    return useMoreBits(layerOf(name), nLayers) ? GGMLType.Q6_K : base;
  }
  if (name.includes("attn_qkv.weight")) return GGMLType.Q5_K;
  if (name.includes("ffn_down")) {
    return useMoreBits(layerOf(name), nLayers) ? GGMLType.Q6_K : base;
  }
  return base;
}

/** llama.cpp's exceptions for the IQ4 mixes without an importance matrix (dense models). */
function iq4Type(base: GGMLType, name: string, nLayers: number, options: TensorTypeOptions): GGMLType {
  if (name.includes("attn_v.weight")) return (options.gqa ?? 1) >= 4 ? GGMLType.Q5_K : base;
  if (name.includes("ffn_down")) return layerOf(name) < Math.trunc(nLayers / 8) ? GGMLType.Q5_K : base;
  return base;
}

/** The layer number of a `blk.N.…` tensor name. */
function layerOf(name: string): number {
  const match = /^blk\.(\d+)\./.exec(name);
  if (match === null) throw new InvalidArgumentError("tensorName", `"${name}" has no blk.N. layer prefix`);
  return Number(match[1]);
}

/** `type`, or its fallback when the row length is not a whole number of its blocks. */
function fitRow(type: GGMLType, rowLength: number): GGMLType {
  if (rowLength % blockSizeOf(type) === 0) return type;
  const fallback = FALLBACKS.get(type);
  if (fallback !== undefined && rowLength % blockSizeOf(fallback) === 0) return fallback;
  return GGMLType.F16;
}
