import { it } from "vitest";
import { syntheticModelPath } from "../support/fixtures.ts";
import { llamaCppLogits, loadLlamaCppModel } from "../support/llamacpp.ts";
it("dbg", async () => {
  for (const arch of ["llama", "qwen3"] as const) {
  const path = await syntheticModelPath(arch, "F32");
  const model = await loadLlamaCppModel(path);
  for (const opts of [{}, { flashAttention: false }, { flashAttention: true }, { experimentalKvCacheKeyType: "F32" as const, experimentalKvCacheValueType: "F32" as const }]) {
    const context = await model.createContext({ contextSize: 64, sequences: 4, ...opts });
    const logits = await llamaCppLogits(context, [model.tokens.bos!, 10, 20, 30]);
    console.log(arch, JSON.stringify(opts), logits.map((r) => r[0]));
    await context.dispose();
  }
  }
});
