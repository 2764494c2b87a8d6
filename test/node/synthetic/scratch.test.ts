import { it } from "vitest";
import { ReferenceModel, type ReferenceWeights } from "../../../src/model/reference.ts";
import { syntheticModelConfig, syntheticTensors, SYNTHETIC_ARCHS } from "../../../src/model/synthetic.ts";
import { layerTensorNames } from "../../../src/model/config.ts";
import { llama3RopeDivisors } from "../../../src/model/reference-rope.ts";
import { randomTokens, top1Probability } from "../reference/compare.ts";

it("scale", () => {
  for (const arch of SYNTHETIC_ARCHS) {
    const c = syntheticModelConfig(arch, "tiny");
    const t = new Map(syntheticTensors(c, 1).map((x) => [x.name, x.values()]));
    const g = (n: string) => t.get(n)!;
    const o = (n: string) => t.get(n) ?? null;
    const w: ReferenceWeights = {
      tokenEmbd: g("token_embd.weight"), outputNorm: g("output_norm.weight"), output: o("output.weight") ?? g("token_embd.weight"),
      ropeFreqDivisors: o("rope_freqs.weight"),
      layers: Array.from({ length: c.nLayers }, (_, l) => { const n = layerTensorNames(l); return {
        attnNorm: g(n.attnNorm), wq: g(n.q), wk: g(n.k), wv: g(n.v), bq: o(n.qBias), bk: o(n.kBias), bv: o(n.vBias), qNorm: o(n.qNorm), kNorm: o(n.kNorm),
        wo: g(n.o), ffnNorm: g(n.ffnNorm), wGate: g(n.gate), wUp: g(n.up), wDown: g(n.down) }; }),
    };
    const m = new ReferenceModel(c, w);
    const ids = randomTokens(128, c.vocabSize, 3);
    const t0 = performance.now();
    const logits = m.forward(ids, m.createCache(), { allLogits: true });
    const ms = performance.now() - t0;
    const p = logits.map(top1Probability).sort((a, b) => a - b);
    const g2 = m.greedy(ids.slice(0, 10), 32);
    console.log(arch, `${ms.toFixed(0)}ms`, "top1 p median", p[64]!.toFixed(3), "p10", p[12]!.toFixed(3), "distinct greedy", new Set(g2).size, g2.join(" "));
  }
});
it("debug", () => {
  const c = syntheticModelConfig("qwen3", "tiny");
  const t = new Map(syntheticTensors(c, 1).map((x) => [x.name, x.values()]));
  const E = t.get("token_embd.weight")!;
  const norms = Array.from({ length: c.vocabSize }, (_, j) => { let s = 0; for (let i = 0; i < 256; i++) s += E[j*256+i]! ** 2; return Math.sqrt(s); });
  const sorted = norms.map((v, i) => [v, i] as const).sort((a, b) => b[0] - a[0]);
  console.log("largest norms", sorted.slice(0, 5), "mean", norms.reduce((a, b) => a + b) / norms.length);
  const g = t.get("output_norm.weight")!;
  console.log("gain mean", g.reduce((a, b) => a + b) / g.length);
});
it("debug2", () => {
  for (const variant of ["tied", "untied", "zeroLayers"]) {
  const c = syntheticModelConfig("qwen3", "tiny");
  const t = new Map(syntheticTensors(c, 1).map((x) => [x.name, x.values()]));
  const g = (n: string) => t.get(n)!;
  const o = (n: string) => t.get(n) ?? null;
  const E = g("token_embd.weight");
  let out = E;
  if (variant === "untied") { out = E.map((v, i) => E[(i * 7919 + 13) % E.length]!); }
  const w: ReferenceWeights = {
    tokenEmbd: E, outputNorm: g("output_norm.weight"), output: out,
    ropeFreqDivisors: o("rope_freqs.weight"),
    layers: Array.from({ length: c.nLayers }, (_, l) => { const n = layerTensorNames(l); const z = (a: Float32Array) => variant === "zeroLayers" ? new Float32Array(a.length) : a; return {
      attnNorm: g(n.attnNorm), wq: g(n.q), wk: g(n.k), wv: g(n.v), bq: o(n.qBias), bk: o(n.kBias), bv: o(n.vBias), qNorm: o(n.qNorm), kNorm: o(n.kNorm),
      wo: z(g(n.o)), ffnNorm: g(n.ffnNorm), wGate: g(n.gate), wUp: g(n.up), wDown: z(g(n.down)) }; }),
  };
  const m = new ReferenceModel(c, w);
  const ids = randomTokens(128, c.vocabSize, 3);
  const logits = m.forward(ids, m.createCache(), { allLogits: true });
  const p = logits.map(top1Probability).sort((a, b) => a - b);
  const tops = logits.map((l) => l.indexOf(Math.max(...l)));
  console.log(variant, "median", p[64]!.toFixed(3), "tops", tops.slice(0, 20).join(" "), "inputs", ids.slice(0, 20).join(" "));
  }
});
