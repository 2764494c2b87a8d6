/**
 * Per-tensor types of each quantization mix, against llama.cpp's rules (llama-quant.cpp)
 * worked out by hand for small layer counts.
 */
import { describe, expect, it } from "vitest";
import { InvalidArgumentError } from "../../../src/errors.ts";
import { GGMLType } from "../../../src/gguf/ggml-type.ts";
import {
  fileTypeOfMix,
  QUANT_MIXES,
  type QuantMix,
  tensorTypeForMix,
  useMoreBits,
} from "../../../src/gguf/quant-mix.ts";

const MATRIX = [256, 512]; // ne[0] = 256: every block size divides it

describe("fileTypeOfMix", () => {
  it("gives llama.cpp's LLAMA_FTYPE values", () => {
    expect(QUANT_MIXES.map((m) => [m, fileTypeOfMix(m)])).toEqual([
      ["F32", 0],
      ["F16", 1],
      ["BF16", 32],
      ["Q8_0", 7],
      ["Q4_0", 2],
      ["Q4_K_M", 15],
      ["Q6_K", 18],
      ["IQ4_NL", 25],
      ["IQ4_XS", 30],
    ]);
  });
});

describe("useMoreBits", () => {
  it("matches llama.cpp's rule for 8 and 32 layers", () => {
    // n = 8: n/8 = 1, 7n/8 = 7 → layers < 1, ≥ 7, and (i − 1) mod 3 = 2 → 0, 3, 6, 7.
    expect([...Array(8).keys()].filter((i) => useMoreBits(i, 8))).toEqual([0, 3, 6, 7]);
    // n = 32 (Llama 2 7B): < 4, ≥ 28, (i − 4) mod 3 = 2 → 6, 9, …, 27: 16 layers, the
    // "half of attention.wv and feed_forward.w2" that llama.cpp's docs describe.
    const more = [...Array(32).keys()].filter((i) => useMoreBits(i, 32));
    expect(more).toEqual([0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]);
    // n = 4: n/8 = 0, 7n/8 = 3 → (i − 0) mod 3 = 2 gives 2, and 3 is in the last eighth.
    expect([...Array(4).keys()].filter((i) => useMoreBits(i, 4))).toEqual([2, 3]);
  });
});

describe("tensorTypeForMix", () => {
  const type = (mix: QuantMix, name: string, shape: number[] = MATRIX, nLayers = 8) =>
    tensorTypeForMix(mix, name, shape, nLayers);

  it("keeps norms, biases and other tensors llama.cpp never quantizes in F32", () => {
    for (const mix of QUANT_MIXES) {
      expect(type(mix, "blk.0.attn_norm.weight", [256])).toBe(GGMLType.F32);
      expect(type(mix, "output_norm.weight", [256])).toBe(GGMLType.F32);
      expect(type(mix, "blk.0.attn_q.bias", [256])).toBe(GGMLType.F32);
      expect(type(mix, "blk.0.attn_q_norm.weight", [64])).toBe(GGMLType.F32);
      expect(type(mix, "blk.0.attn_q.weight", [256, 1])).toBe(GGMLType.F32); // 1-D to ggml
      expect(type(mix, "position_embd.weight", MATRIX)).toBe(GGMLType.F32);
      expect(type(mix, "blk.0.ffn_gate_inp.weight", MATRIX)).toBe(GGMLType.F32);
    }
  });

  it("gives every matrix the float type in F32/F16/BF16 mixes, whatever its shape", () => {
    expect(type("F16", "blk.0.attn_q.weight", [100, 7])).toBe(GGMLType.F16);
    expect(type("BF16", "output.weight")).toBe(GGMLType.BF16);
    expect(type("F32", "token_embd.weight")).toBe(GGMLType.F32);
  });

  it("Q8_0 and Q4_0: default type, output in Q8_0 / Q6_K", () => {
    expect(type("Q8_0", "blk.3.ffn_down.weight")).toBe(GGMLType.Q8_0);
    expect(type("Q8_0", "output.weight")).toBe(GGMLType.Q8_0);
    expect(type("Q4_0", "blk.3.attn_v.weight")).toBe(GGMLType.Q4_0);
    expect(type("Q4_0", "token_embd.weight")).toBe(GGMLType.Q4_0);
    expect(type("Q4_0", "output.weight")).toBe(GGMLType.Q6_K);
  });

  it("Q4_K_M: Q6_K for output and for attn_v/ffn_down in the use-more-bits layers", () => {
    for (let layer = 0; layer < 8; layer++) {
      const more = [0, 3, 6, 7].includes(layer); // worked out above for 8 layers
      const want = more ? GGMLType.Q6_K : GGMLType.Q4_K;
      expect(type("Q4_K_M", `blk.${layer}.attn_v.weight`)).toBe(want);
      expect(type("Q4_K_M", `blk.${layer}.ffn_down.weight`)).toBe(want);
      expect(type("Q4_K_M", `blk.${layer}.attn_q.weight`)).toBe(GGMLType.Q4_K);
      expect(type("Q4_K_M", `blk.${layer}.attn_k.weight`)).toBe(GGMLType.Q4_K);
      expect(type("Q4_K_M", `blk.${layer}.ffn_up.weight`)).toBe(GGMLType.Q4_K);
    }
    expect(type("Q4_K_M", "blk.1.attn_qkv.weight")).toBe(GGMLType.Q5_K);
    expect(type("Q4_K_M", "output.weight")).toBe(GGMLType.Q6_K);
    expect(type("Q4_K_M", "token_embd.weight")).toBe(GGMLType.Q4_K);
  });

  it("IQ4_NL and IQ4_XS: Q6_K output, Q5_K for ffn_down in the first eighth and for attn_v from 4 query heads per KV head", () => {
    for (const mix of ["IQ4_NL", "IQ4_XS"] as const) {
      const base = mix === "IQ4_NL" ? GGMLType.IQ4_NL : GGMLType.IQ4_XS;
      // 16 layers: n/8 = 2, so layers 0 and 1 (llama-quant.cpp, ffn_down without imatrix).
      for (let layer = 0; layer < 16; layer++) {
        expect(type(mix, `blk.${layer}.ffn_down.weight`, MATRIX, 16)).toBe(layer < 2 ? GGMLType.Q5_K : base);
        expect(type(mix, `blk.${layer}.attn_v.weight`, MATRIX, 16)).toBe(base);
        expect(type(mix, `blk.${layer}.ffn_up.weight`, MATRIX, 16)).toBe(base);
      }
      expect(tensorTypeForMix(mix, "blk.3.attn_v.weight", MATRIX, 16, { gqa: 4 })).toBe(GGMLType.Q5_K);
      expect(tensorTypeForMix(mix, "blk.3.attn_v.weight", MATRIX, 16, { gqa: 2 })).toBe(base);
      expect(type(mix, "output.weight")).toBe(GGMLType.Q6_K);
      expect(type(mix, "token_embd.weight")).toBe(base);
      // 2 layers (the tiny synthetic models): n/8 = 0, no ffn_down exception.
      expect(type(mix, "blk.0.ffn_down.weight", MATRIX, 2)).toBe(base);
    }
  });

  it("quantizes token_embd like the output when the embeddings are tied", () => {
    const tied = { tiedEmbeddings: true };
    expect(tensorTypeForMix("Q4_K_M", "token_embd.weight", MATRIX, 8, tied)).toBe(GGMLType.Q6_K);
    expect(tensorTypeForMix("Q4_0", "token_embd.weight", MATRIX, 8, tied)).toBe(GGMLType.Q6_K);
    expect(tensorTypeForMix("Q8_0", "token_embd.weight", MATRIX, 8, tied)).toBe(GGMLType.Q8_0);
  });

  it("Q6_K: everything quantized is Q6_K", () => {
    for (const name of ["token_embd.weight", "output.weight", "blk.0.attn_v.weight", "blk.1.ffn_down.weight"]) {
      expect(type("Q6_K", name)).toBe(GGMLType.Q6_K);
    }
  });

  it("falls back when the row length is not whole blocks", () => {
    // 96 = 3·32: not a multiple of 256.
    expect(type("Q4_K_M", "blk.1.attn_q.weight", [96, 64])).toBe(GGMLType.Q5_0); // Q4_K → Q5_0
    expect(type("Q4_K_M", "blk.0.attn_v.weight", [96, 64])).toBe(GGMLType.Q8_0); // Q6_K → Q8_0
    expect(type("Q4_K_M", "blk.1.attn_qkv.weight", [96, 64])).toBe(GGMLType.Q5_1); // Q5_K → Q5_1
    expect(type("Q4_K_M", "output.weight", [96, 64])).toBe(GGMLType.Q8_0); // row not a Q4_K row → Q8_0
    expect(type("Q4_0", "output.weight", [96, 64])).toBe(GGMLType.Q8_0); // Q6_K → Q8_0
    expect(type("Q6_K", "blk.0.ffn_up.weight", [96, 64])).toBe(GGMLType.Q8_0);
    expect(type("IQ4_XS", "blk.1.attn_q.weight", [96, 64])).toBe(GGMLType.IQ4_NL); // IQ4_XS → IQ4_NL
    expect(type("IQ4_NL", "blk.1.attn_q.weight", [96, 64])).toBe(GGMLType.IQ4_NL);
    // 48: not even a multiple of 32 → F16.
    for (const mix of ["Q8_0", "Q4_0", "Q4_K_M", "Q6_K", "IQ4_NL", "IQ4_XS"] as const) {
      expect(type(mix, "blk.1.attn_q.weight", [48, 64])).toBe(GGMLType.F16);
      expect(type(mix, "output.weight", [48, 64])).toBe(GGMLType.F16);
    }
  });

  it("refuses unknown mixes and layer tensors without a layer number", () => {
    expect(() => tensorTypeForMix("Q3_K_S" as QuantMix, "output.weight", MATRIX, 8)).toThrow(InvalidArgumentError);
    expect(() => type("Q4_K_M", "layers.ffn_down.weight")).toThrow(/blk\.N\./);
  });
});
