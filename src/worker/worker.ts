/**
 * The Web Worker entry of the engine: serves one engine to a {@link WorkerEngine} on the
 * page. Start it as a module worker:
 * `new Worker(new URL("gguf-webgpu/worker", import.meta.url), { type: "module" })`
 * (or with a bundler's own worker import, e.g. Vite's `import EngineWorker from "gguf-webgpu/worker?worker"`).
 */
import { serveEngine } from "./host.ts";

serveEngine({
  postMessage: (message) => globalThis.postMessage(message),
  addEventListener: (type, listener) => globalThis.addEventListener(type, listener),
  removeEventListener: (type, listener) => globalThis.removeEventListener(type, listener),
});
