/**
 * The CPU twins of the gemma and phi ops (src/model/reference-ops.ts) against facts that do
 * not come from the code: identities of the formulas, published values, and llama.cpp's
 * sliding-window mask written out as llama.cpp writes it (llama-hparams.h, is_masked_swa).
 */
import { describe, expect, it } from "vitest";
import { attendHead, geglu, geluTanh, longRopeDivisors, rotateHead, softcap, windowStart } from "../../../src/model/reference-ops.ts";

describe("geluTanh", () => {
  it("matches PyTorch's gelu(approximate='tanh') at 1 and -1, and gelu(x) − gelu(−x) = x", () => {
    // torch.nn.functional.gelu(torch.tensor([1., -1.]), approximate="tanh") = [0.8412, -0.1588]
    expect(geluTanh(1)).toBeCloseTo(0.8411919906, 9);
    expect(geluTanh(-1)).toBeCloseTo(-0.1588080094, 9);
    for (const x of [0.01, 0.7, 3, 9.5, 20]) expect(geluTanh(x) - geluTanh(-x)).toBeCloseTo(x, 12);
    expect(geluTanh(0)).toBe(0);
  });

  it("geglu multiplies the gate's gelu by up, element by element", () => {
    const gate = Float32Array.of(1, -1, 0);
    geglu(gate, Float32Array.of(2, 3, 5));
    expect([...gate]).toEqual([Math.fround(2 * geluTanh(1)), Math.fround(3 * geluTanh(-1)), 0]);
    expect(() => geglu(new Float32Array(3), new Float32Array(2))).toThrow(/up has 2 values, gate 3/);
  });
});

describe("softcap", () => {
  it("is odd, bounded by the cap, and the identity to first order near 0", () => {
    const v = Float32Array.of(1e-4, -1e-4, 1e3, -1e3, 30);
    softcap(v, 30);
    expect(v[0]).toBeCloseTo(1e-4, 10);
    expect(v[1]).toBe(-v[0]!);
    expect(v[2]).toBeLessThanOrEqual(30);
    expect(v[3]).toBe(-v[2]!);
    expect(v[4]).toBeCloseTo(30 * Math.tanh(1), 5);
    expect(() => softcap(v, 0)).toThrow(/finite number > 0/);
  });
});

describe("sliding window", () => {
  /** llama.cpp's LLAMA_SWA_TYPE_STANDARD mask: key p0 is hidden from query p1 when p1 − p0 ≥ n_swa. */
  const isMaskedSwa = (nSwa: number, p0: number, p1: number) => p1 - p0 >= nSwa;

  it("windowStart is the first position llama.cpp's mask leaves visible", () => {
    for (let window = 1; window <= 7; window++) {
      for (let pos = 0; pos < 20; pos++) {
        const visible = Array.from({ length: pos + 1 }, (_, p0) => p0).filter((p0) => !isMaskedSwa(window, p0, pos));
        expect(windowStart(pos, window)).toBe(visible[0]);
        expect(visible.length).toBe(pos + 1 - windowStart(pos, window));
      }
    }
    expect(windowStart(100, undefined)).toBe(0);
  });

  it("attendHead with a window of 1 returns the value at pos; a huge cap changes nothing", () => {
    const keys = [Float32Array.of(1, 0), Float32Array.of(0, 1), Float32Array.of(1, 1)];
    const values = [Float32Array.of(1, 2), Float32Array.of(3, 4), Float32Array.of(5, 6)];
    const out = new Float32Array(2);
    const scores = new Float32Array(3);
    attendHead(out, Float32Array.of(2, -1), (p) => keys[p]!, (p) => values[p]!, 2, { scale: 1, window: 1 }, scores);
    expect([...out]).toEqual([5, 6]);
    // Scores 2, −1, 1: softmax weights e^2, e^-1, e^1 over their sum.
    const e = [Math.exp(2), Math.exp(-1), Math.exp(1)];
    const total = e[0]! + e[1]! + e[2]!;
    const want = [0, 1].map((d) => e.reduce((acc, w, p) => acc + (w / total) * values[p]![d]!, 0));
    attendHead(out, Float32Array.of(2, -1), (p) => keys[p]!, (p) => values[p]!, 2, { scale: 1, softcap: 1e9 }, scores);
    expect(out[0]).toBeCloseTo(want[0]!, 5);
    expect(out[1]).toBeCloseTo(want[1]!, 5);
  });
});

describe("rope", () => {
  it("longRopeDivisors: long only when the context exceeds the original (llama.cpp's n_ctx_seq > n_ctx_orig_yarn)", () => {
    const factors = { long: Float32Array.of(2), short: Float32Array.of(1) };
    expect(longRopeDivisors(factors, 4097, 4096)).toBe(factors.long);
    expect(longRopeDivisors(factors, 4096, 4096)).toBe(factors.short);
  });

  it("rotateHead scales each rotated pair's length by the attention factor and leaves the tail", () => {
    const head = Float32Array.of(3, 4, 1, 2, 7, 8);
    rotateHead(head, [0.3, -1.2], { dims: 4, layout: "neox", attnFactor: 1.5 });
    // neox pairs (0, 2) and (1, 3): lengths √10 and √20, each times 1.5.
    expect(Math.hypot(head[0]!, head[2]!)).toBeCloseTo(1.5 * Math.hypot(3, 1), 5);
    expect(Math.hypot(head[1]!, head[3]!)).toBeCloseTo(1.5 * Math.hypot(4, 2), 5);
    expect([head[4], head[5]]).toEqual([7, 8]);
  });
});
