import { it } from "vitest";
import process from "node:process";
import type { QuantMix } from "../../../src/gguf/quant-mix.ts";
import { openGGUF } from "../../../src/gguf/reader.ts";
import { ReferenceModel } from "../../../src/model/reference.ts";
import { ReferenceModel as QModel } from "../../../src/model/reference-actq-scratch.ts";
import { writeSyntheticModel } from "../../../src/model/synthetic.ts";
import { klDivergence, randomTokens, top1, top1Probability } from "../reference/compare.ts";
it("dbg", async () => {
  for (const [arch, quant] of [["llama", "Q8_0"], ["llama", "Q4_K_M"], ["qwen3", "Q8_0"], ["qwen3", "Q4_K_M"]] as [ "llama" | "qwen3", QuantMix][]) {
    const path = `/tmp/synscratch/${arch}-${quant}.gguf`;
    await writeSyntheticModel(path, { arch, preset: "tiny", quant });
    const ours = await ReferenceModel.load(await openGGUF(path));
    const q = await QModel.load(await openGGUF(path));
    const ids = randomTokens(256, 1000, 11);
    const a = ours.forward(ids, ours.createCache(), { allLogits: true });
    const b = q.forward(ids, q.createCache(), { allLogits: true });
    let kl = 0, ag = 0; a.forEach((l, i) => { kl += klDivergence(b[i]!, l); if (top1(l) === top1(b[i]!)) ag++; });
    const p = a.map(top1Probability).sort((x, y) => x - y);
    const g = ours.greedy(ids.slice(0, 8), 32);
    console.log(process.env.SYN_EMB, process.env.SYN_LOGIT, process.env.SYN_BETA, arch, quant, `KL ${(kl / a.length).toExponential(2)} agree ${(ag / a.length * 100).toFixed(1)}% p1 median ${p[128]!.toFixed(2)} p10 ${p[25]!.toFixed(2)} greedy distinct ${new Set(g).size}`);
  }
});
