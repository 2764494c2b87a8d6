// Node importing the installed package by its name (CPU backend: Node has no WebGPU of its own).
// Usage: node node-main.mjs MODEL PROMPT; prints one JSON line.
import { loadEngine } from "gguf-webgpu";

const [model, prompt] = process.argv.slice(2);
const engine = await loadEngine(model, { backend: "cpu" });
try {
  const r = await engine.generate(prompt, { temperature: 0, maxTokens: 8, ignoreEos: true }).result;
  console.log(JSON.stringify({ text: r.text, tokens: r.tokens, description: engine.description }));
} finally {
  await engine.dispose();
}
