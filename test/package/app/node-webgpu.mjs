// Node asking for WebGPU from the installed package without Dawn (the optional peer
// dependency `webgpu`) installed. Usage: node node-webgpu.mjs MODEL; prints one JSON line
// with the error's name, code and message (or {"loaded": true} if it loaded after all).
import { loadEngine } from "gguf-webgpu";

const [model] = process.argv.slice(2);
try {
  const engine = await loadEngine(model, { backend: "webgpu" });
  await engine.dispose();
  console.log(JSON.stringify({ loaded: true }));
} catch (e) {
  console.log(JSON.stringify({ name: e?.name, code: e?.code, message: String(e?.message ?? e) }));
}
