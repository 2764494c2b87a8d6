import { it } from "vitest";
import type { QuantMix } from "../../../src/gguf/quant-mix.ts";
import { openGGUF } from "../../../src/gguf/reader.ts";
import { ReferenceModel } from "../../../src/model/reference.ts";
import { ReferenceModel as QModel } from "../../../src/model/reference-actq-scratch.ts";
import { syntheticModelPath } from "../support/fixtures.ts";
import { loadLlamaCppModel } from "../support/llamacpp.ts";
import { createComparisonContext, klDivergence, llamaCppLogitsByToken, randomTokens, top1 } from "../reference/compare.ts";
it("dbg", async () => {
  for (const [arch, quant] of [["llama", "F16"], ["llama", "Q8_0"], ["llama", "Q4_K_M"], ["qwen3", "Q4_K_M"]] as [ "llama" | "qwen3", QuantMix][]) {
    const path = await syntheticModelPath(arch, quant);
    const ours = await ReferenceModel.load(await openGGUF(path));
    const oursQ = await QModel.load(await openGGUF(path));
    const model = await loadLlamaCppModel(path);
    const context = await createComparisonContext(model, 512);
    const ids = [model.tokens.bos!, ...randomTokens(255, 1000, 11)];
    const theirs = await llamaCppLogitsByToken(context, ids, 1000);
    const a = ours.forward(ids, ours.createCache(), { allLogits: true });
    const b = oursQ.forward(ids, oursQ.createCache(), { allLogits: true });
    const stat = (m: Float32Array[]) => { let kl = 0, ag = 0; m.forEach((l, i) => { kl += klDivergence(theirs[i]!, l); if (top1(l) === top1(theirs[i]!)) ag++; }); return `KL ${(kl / m.length).toExponential(2)} agree ${(ag / m.length * 100).toFixed(1)}%`; };
    console.log(arch, quant, "plain:", stat(a), " act-quantized:", stat(b));
    await context.dispose(); await model.dispose();
  }
});
