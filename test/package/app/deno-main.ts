/**
 * Deno importing the installed package by its name (resolved through this project's
 * package.json and node_modules). Usage: deno run -A deno-main.ts MODEL BACKEND PROMPT
 * Prints one JSON line.
 */
import { loadEngine } from "gguf-webgpu";

const [model, backend, prompt] = Deno.args;
if (!model || (backend !== "webgpu" && backend !== "cpu") || prompt === undefined) {
  throw new Error("usage: deno-main.ts MODEL webgpu|cpu PROMPT");
}
const engine = await loadEngine(model, { backend });
try {
  const r = await engine.generate(prompt, { temperature: 0, maxTokens: 8, ignoreEos: true }).result;
  console.log(JSON.stringify({ text: r.text, tokens: r.tokens, description: engine.description }));
} finally {
  await engine.dispose();
}
