/**
 * CPU conversion between f32 values and GGML tensor encodings: the reference that GPU
 * kernels, the CPU forward pass and the GGUF writer share. Block layouts are GGML's
 * (ggml-common.h); dequantization is bit-exact with GGML's CPU code.
 */
import { GGUFError, InvalidArgumentError, UnsupportedTensorTypeError } from "../../errors.ts";
import { BLOCK_LAYOUTS, GGMLType, ggmlTypeName } from "../ggml-type.ts";
import { decodeBf16, decodeF16, decodeF32, encodeBf16, encodeF16, encodeF32, f16ToF32Table } from "./float.ts";
import { dequantizeIQ4_NL, dequantizeIQ4_XS, quantizeIQ4_NL, quantizeIQ4_XS } from "./iquants.ts";
import {
  dequantizeQ2_K,
  dequantizeQ3_K,
  dequantizeQ4_K,
  dequantizeQ5_K,
  dequantizeQ6_K,
  quantizeQ2_K,
  quantizeQ3_K,
  quantizeQ4_K,
  quantizeQ5_K,
  quantizeQ6_K,
} from "./kquants.ts";
import {
  dequantizeQ4_0,
  dequantizeQ4_1,
  dequantizeQ5_0,
  dequantizeQ5_1,
  dequantizeQ8_0,
  quantizeQ4_0,
  quantizeQ4_1,
  quantizeQ5_0,
  quantizeQ5_1,
  quantizeQ8_0,
} from "./legacy.ts";

export { bf16BitsToF32, f16BitsToF32, f16ToF32Table, f32ToBf16Bits, f32ToF16Bits } from "./float.ts";

/** Decodes `nBlocks` blocks of `src` into `out` from `outOffset`; `f16` is the half→f32 table. */
type BlockDecoder = (src: Uint8Array, nBlocks: number, out: Float32Array, outOffset: number, f16: Float32Array) => void;

const BLOCK_DECODERS: ReadonlyMap<GGMLType, BlockDecoder> = new Map<GGMLType, BlockDecoder>([
  [GGMLType.F32, (src, n, out, at) => decodeF32(src, n, out, at)],
  [GGMLType.F16, (src, n, out, at) => decodeF16(src, n, out, at)],
  [GGMLType.BF16, (src, n, out, at) => decodeBf16(src, n, out, at)],
  [GGMLType.Q4_0, dequantizeQ4_0],
  [GGMLType.Q4_1, dequantizeQ4_1],
  [GGMLType.Q5_0, dequantizeQ5_0],
  [GGMLType.Q5_1, dequantizeQ5_1],
  [GGMLType.Q8_0, dequantizeQ8_0],
  [GGMLType.Q2_K, dequantizeQ2_K],
  [GGMLType.Q3_K, dequantizeQ3_K],
  [GGMLType.Q4_K, dequantizeQ4_K],
  [GGMLType.Q5_K, dequantizeQ5_K],
  [GGMLType.Q6_K, dequantizeQ6_K],
  [GGMLType.IQ4_NL, dequantizeIQ4_NL],
  [GGMLType.IQ4_XS, dequantizeIQ4_XS],
]);

const ENCODERS: ReadonlyMap<GGMLType, (values: Float32Array) => Uint8Array<ArrayBuffer>> = new Map([
  [GGMLType.F32, encodeF32],
  [GGMLType.F16, encodeF16],
  [GGMLType.BF16, encodeBf16],
  [GGMLType.Q4_0, quantizeQ4_0],
  [GGMLType.Q4_1, quantizeQ4_1],
  [GGMLType.Q5_0, quantizeQ5_0],
  [GGMLType.Q5_1, quantizeQ5_1],
  [GGMLType.Q8_0, quantizeQ8_0],
  [GGMLType.Q2_K, quantizeQ2_K],
  [GGMLType.Q3_K, quantizeQ3_K],
  [GGMLType.Q4_K, quantizeQ4_K],
  [GGMLType.Q5_K, quantizeQ5_K],
  [GGMLType.Q6_K, quantizeQ6_K],
  [GGMLType.IQ4_NL, quantizeIQ4_NL],
  [GGMLType.IQ4_XS, quantizeIQ4_XS],
]);

/** Types {@link dequantize} accepts. */
export const DEQUANTIZE_TYPES: ReadonlySet<GGMLType> = new Set(BLOCK_DECODERS.keys());

/** Types {@link quantize} produces. */
export const QUANTIZE_TYPES: ReadonlySet<GGMLType> = new Set(ENCODERS.keys());

/** Names the data in error messages; defaults to a generic label. */
export interface QuantOptions {
  /** Tensor name to put in error messages. */
  tensor?: string;
}

/**
 * Decodes `nElements` values of `type` from `data` (exactly the tensor's bytes; any
 * byteOffset, no alignment needed) into a new Float32Array.
 * @throws UnsupportedTensorTypeError for a type outside {@link DEQUANTIZE_TYPES};
 *   GGUFError `TENSOR_SIZE` when `nElements` is not whole blocks or `data` has the
 *   wrong length.
 */
export function dequantize(
  type: GGMLType,
  data: Uint8Array,
  nElements: number,
  options: QuantOptions = {},
): Float32Array<ArrayBuffer> {
  const out = new Float32Array(nElements);
  dequantizeInto(type, data, out, 0, nElements, options);
  return out;
}

/**
 * Like {@link dequantize}, but writes into `out` from `outOffset`, so a caller can decode
 * many tensors (or rows) into one buffer without extra copies.
 */
export function dequantizeInto(
  type: GGMLType,
  data: Uint8Array,
  out: Float32Array,
  outOffset: number,
  nElements: number,
  options: QuantOptions = {},
): void {
  const tensor = options.tensor ?? "(data)";
  const decode = BLOCK_DECODERS.get(type);
  const layout = BLOCK_LAYOUTS.get(type);
  if (decode === undefined || layout === undefined) {
    throw new UnsupportedTensorTypeError(tensor, ggmlTypeName(type));
  }
  const nBlocks = wholeBlocks(layout.name, layout.blockSize, nElements, tensor);
  const expected = nBlocks * layout.typeSize;
  if (data.byteLength !== expected) {
    throw new GGUFError(
      "TENSOR_SIZE",
      `${nElements} ${layout.name} values take ${expected} bytes, but ${data.byteLength} were given`,
      { field: tensor },
    );
  }
  if (outOffset < 0 || outOffset + nElements > out.length) {
    throw new InvalidArgumentError(
      "out",
      `${nElements} values from offset ${outOffset} do not fit in an output of ${out.length}`,
    );
  }
  decode(data, nBlocks, out, outOffset, f16ToF32Table());
}

/**
 * Encodes `values` as `type`. Deterministic; the 32-value formats round exactly as
 * GGML's reference quantizer does, the K-quants use a least-squares scale search, and
 * IQ4_NL / IQ4_XS follow GGML's own search (as `llama-quantize` runs it without an
 * importance matrix).
 * @throws InvalidArgumentError when `type` is not in {@link QUANTIZE_TYPES}, when the
 *   count is not whole blocks, or (block formats) when a value is NaN or infinite.
 */
export function quantize(type: GGMLType, values: Float32Array, options: QuantOptions = {}): Uint8Array<ArrayBuffer> {
  const tensor = options.tensor ?? "values";
  const encode = ENCODERS.get(type);
  const layout = BLOCK_LAYOUTS.get(type);
  if (encode === undefined || layout === undefined) {
    throw new InvalidArgumentError("type", `cannot quantize ${tensor} to ${ggmlTypeName(type)}`);
  }
  if (values.length % layout.blockSize !== 0) {
    throw new InvalidArgumentError(
      tensor,
      `${values.length} values is not a whole number of ${layout.blockSize}-value ${layout.name} blocks`,
    );
  }
  if (layout.blockSize > 1) {
    // A NaN or infinity would poison a whole block's scale; refuse it with its position.
    for (let i = 0; i < values.length; i++) {
      if (!Number.isFinite(values[i])) {
        throw new InvalidArgumentError(tensor, `value ${values[i]} at index ${i} cannot be quantized to ${layout.name}`);
      }
    }
  }
  return encode(values);
}

function wholeBlocks(typeName: string, blockSize: number, nElements: number, tensor: string): number {
  if (!Number.isInteger(nElements) || nElements < 0 || nElements % blockSize !== 0) {
    throw new GGUFError(
      "TENSOR_SIZE",
      `${nElements} values is not a whole number of ${blockSize}-value ${typeName} blocks`,
      { field: tensor },
    );
  }
  return nElements / blockSize;
}
