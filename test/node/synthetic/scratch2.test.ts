import { it } from "vitest";
import type { Token } from "node-llama-cpp";
import { openGGUF } from "../../../src/gguf/reader.ts";
import { ReferenceModel } from "../../../src/model/reference.ts";
import { syntheticModelPath } from "../support/fixtures.ts";
import { createExactContext, loadLlamaCppModel } from "../support/llamacpp.ts";
import { llamaCppLogitsByToken, maxAbsDiff, randomTokens } from "../reference/compare.ts";
it("dbg", async () => {
  const arch = "qwen3";
  const path = await syntheticModelPath(arch, "F32");
  const file = await openGGUF(path);
  const ours = await ReferenceModel.load(file);
  const model = await loadLlamaCppModel(path);
  const context = await createExactContext(model, 512);
  const prompt = [model.tokens.bos!, ...randomTokens(20, 1000, 7)];
  let t0 = performance.now();
  const theirs = await llamaCppLogitsByToken(context, prompt, 1000);
  console.log("llama ms", performance.now() - t0);
  t0 = performance.now();
  const mine = ours.forward(prompt, ours.createCache(), { allLogits: true });
  console.log("ours ms", performance.now() - t0);
  console.log(mine.map((m, i) => maxAbsDiff(m, theirs[i]!).toExponential(2)).join(" "));
  const d = mine[0]!.map((v, i) => v - theirs[0]![i]!);
  console.log("pos0 ours", mine[0]!.slice(0, 6), "theirs", theirs[0]!.slice(0, 6), "diff", d.slice(0, 6));
  // ratio check
  let num = 0, den = 0; for (let i = 0; i < 1000; i++) { num += mine[0]![i]! * theirs[0]![i]!; den += theirs[0]![i]! ** 2; }
  console.log("scale ours/theirs", num / den);
  t0 = performance.now();
  const seq = context.getSequence();
  const out: number[] = [];
  for await (const t of seq.evaluate(prompt as Token[], { temperature: 0 })) { out.push(t); if (out.length === 32) break; }
  console.log("greedy llama ms", performance.now() - t0);
  seq.dispose();
  t0 = performance.now();
  ours.greedy(prompt, 32);
  console.log("greedy ours ms", performance.now() - t0);
});
