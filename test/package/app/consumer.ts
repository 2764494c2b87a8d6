/**
 * Type-checked against the installed package: the public API as a user's TypeScript sees
 * it. The `@ts-expect-error` lines fail the check if the package's types went missing
 * (an unresolved declaration makes everything `any`, and then nothing is an error).
 */
import {
  createEngine,
  type Engine,
  EngineDisposedError,
  type GenerationResult,
  GpuError,
  LlmError,
  type ModelConfig,
  modelConfigFromGGUF,
  openGGUF,
  SourceError,
  tokenizerFromMetadata,
  WorkerEngine,
} from "gguf-webgpu";

export async function use(url: string, gpu: GPU): Promise<GenerationResult> {
  const engine: Engine = createEngine(url, { backend: "webgpu", gpu, onProgress: (p) => console.log(p.phase, p.bytesLoaded) });
  await engine.ready;
  const stream = engine.generate([{ role: "user", content: "Hi" }], { temperature: 0, maxTokens: 4 });
  for await (const chunk of stream) console.log(chunk.text, chunk.tokens.length);
  // @ts-expect-error: a prompt is text, messages or token ids
  engine.generate(42);
  // @ts-expect-error: no such option
  engine.generate("x", { temprature: 1 });
  await engine.dispose();
  return stream.result;
}

export async function inspect(file: Blob): Promise<ModelConfig> {
  const gguf = await openGGUF(file);
  const tokenizer = tokenizerFromMetadata(gguf.metadata);
  const ids: number[] = tokenizer.encode("hello");
  console.log(ids.length, gguf.tensors.length);
  return modelConfigFromGGUF(gguf);
}

export function classify(e: unknown): string {
  if (e instanceof GpuError) return `${e.code} ${e.limit ?? ""} ${e.needed ?? 0}`;
  if (e instanceof SourceError) return `${e.code} ${e.status ?? 0}`;
  if (e instanceof EngineDisposedError) return e.code;
  return e instanceof LlmError ? e.code : "other";
}

export function worker(w: Worker): WorkerEngine {
  const engine = new WorkerEngine(w, "model.gguf", { backend: "cpu", cache: true, onProgress: (p) => console.log(p.phase) });
  // @ts-expect-error: GPU objects cannot cross to a worker
  new WorkerEngine(w, "model.gguf", { gpu: navigator.gpu });
  return engine;
}
