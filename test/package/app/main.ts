/**
 * A page of a project that installed gguf-webgpu from its tarball: the engine in this
 * thread on WebGPU, and the same model in the package's worker on the CPU. The test reads
 * `window.__result` (or `window.__error`) once `body[data-done]` is set.
 */
import { type GenerateOptions, LlmError, loadEngine, WorkerEngine } from "gguf-webgpu";
import EngineWorker from "gguf-webgpu/worker?worker";

const model = new URL("./model.gguf", location.href).href;
const prompt = new URLSearchParams(location.search).get("prompt") ?? "Hello there";
const options: GenerateOptions = { temperature: 0, maxTokens: 8, ignoreEos: true };

async function run(): Promise<Record<string, unknown>> {
  const engine = await loadEngine(model, { backend: "webgpu" });
  let inThread;
  try {
    const r = await engine.generate(prompt, options).result;
    inThread = { text: r.text, tokens: r.tokens, description: engine.description };
  } finally {
    await engine.dispose();
  }
  const worker = new WorkerEngine(new EngineWorker(), model, { backend: "cpu" });
  let inWorker;
  try {
    const r = await worker.generate(prompt, options).result;
    const bad = await worker.generate(prompt, { topP: 5 }).result.catch((e: unknown) => e);
    inWorker = {
      text: r.text,
      tokens: r.tokens,
      description: worker.description,
      errorIsLlmError: bad instanceof LlmError,
      errorName: bad instanceof Error ? bad.name : String(bad),
    };
  } finally {
    await worker.dispose();
  }
  return { inThread, inWorker };
}

const out = document.getElementById("out")!;
run().then(
  (result) => {
    Object.assign(window, { __result: result });
    out.textContent = JSON.stringify(result, null, 2);
    document.body.dataset.done = "ok";
  },
  (error: unknown) => {
    const e = error instanceof Error ? { name: error.name, message: error.message, stack: error.stack } : { message: String(error) };
    Object.assign(window, { __error: e });
    out.textContent = JSON.stringify(e, null, 2);
    document.body.dataset.done = "error";
  },
);
