/**
 * Against GGML itself: fixtures/ggml-golden.json holds llama.cpp's own encodings of a
 * fixed input (ggml_quantize_chunk, the reference quantizers) and its decodings of them
 * (dequantize_row_*), produced by fixtures/make-ggml-golden.py through ctypes.
 * Decoding must match GGML bit for bit for every type; encoding must match byte for byte
 * where ours follows GGML's algorithm (floats, the 32-value formats, IQ4_NL and IQ4_XS). Our
 * K-quant encoders use a different scale search, so for them only the error is compared.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { GGMLType } from "../../../src/gguf/ggml-type.ts";
import { dequantize, quantize } from "../../../src/gguf/quant/index.ts";

interface Golden {
  n: number;
  input: string;
  types: Record<string, { quantized: string; dequantized: string }>;
}

const golden = JSON.parse(readFileSync(new URL("./fixtures/ggml-golden.json", import.meta.url), "utf8")) as Golden;

function bytes(b64: string): Uint8Array {
  return new Uint8Array(Buffer.from(b64, "base64"));
}

function floats(b64: string): Float32Array {
  const raw = bytes(b64);
  return new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
}

/** f32 bit patterns, so −0 vs 0 and NaN payloads count as differences. */
function bits(x: Float32Array): number[] {
  return Array.from(new Uint32Array(x.buffer, x.byteOffset, x.length));
}

const input = floats(golden.input);
const TYPES: Record<string, GGMLType> = {
  F32: GGMLType.F32,
  F16: GGMLType.F16,
  BF16: GGMLType.BF16,
  Q4_0: GGMLType.Q4_0,
  Q4_1: GGMLType.Q4_1,
  Q5_0: GGMLType.Q5_0,
  Q5_1: GGMLType.Q5_1,
  Q8_0: GGMLType.Q8_0,
  Q2_K: GGMLType.Q2_K,
  Q3_K: GGMLType.Q3_K,
  Q4_K: GGMLType.Q4_K,
  Q5_K: GGMLType.Q5_K,
  Q6_K: GGMLType.Q6_K,
  IQ4_NL: GGMLType.IQ4_NL,
  IQ4_XS: GGMLType.IQ4_XS,
};
const SAME_ENCODER = new Set(["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "IQ4_NL", "IQ4_XS"]);

describe("GGML golden data", () => {
  it("covers every type", () => {
    expect(Object.keys(golden.types).sort()).toEqual(Object.keys(TYPES).sort());
    expect(input.length).toBe(golden.n);
  });

  for (const [name, type] of Object.entries(TYPES)) {
    const ref = golden.types[name];

    it(`${name}: decodes GGML's bytes to GGML's values, bit for bit`, () => {
      const ours = dequantize(type, bytes(ref.quantized), golden.n);
      expect(bits(ours)).toEqual(bits(floats(ref.dequantized)));
    });

    if (SAME_ENCODER.has(name)) {
      it(`${name}: encodes the input to GGML's bytes`, () => {
        expect(Array.from(quantize(type, input))).toEqual(Array.from(bytes(ref.quantized)));
      });
    } else {
      it(`${name}: encodes weight-like data with no more squared error than GGML's quantizer`, () => {
        // Both searches minimize error; allow ours 10% more than GGML's (whose search
        // weighs values by magnitude, so neither is optimal in plain squared error).
        // Super-block 0 holds the artificial edge cases (zeros, 65520, ties) and is left
        // to the round-trip bounds; super-blocks 1–3 are plain weight-like values.
        const from = 256;
        const sq = (y: Float32Array) => y.reduce((s, v, i) => (i < from ? s : s + (v - input[i]) ** 2), 0);
        const oursErr = sq(dequantize(type, quantize(type, input), golden.n));
        const ggmlErr = sq(floats(ref.dequantized));
        expect(oursErr).toBeLessThan(1.1 * ggmlErr);
      });
    }
  }
});
