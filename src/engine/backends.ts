/**
 * Chooses and loads the runner behind an engine: the WebGPU model, or the CPU reference.
 * Kept apart from the engine so the scheduler never knows which one it drives.
 */
import type { GGUFFile } from "../gguf/reader.ts";
import { InvalidRequestError } from "./errors.ts";
import { CpuRunner } from "../model/cpu-runner.ts";
import type { ModelRunner, RunnerSizes } from "../model/runner.ts";

/** A model to load: a path or URL, a `Blob`/`File`, or the file's bytes. */
export type ModelSource = string | URL | Blob | Uint8Array;

/** Which backend runs the model, and with which GPU. */
export interface RunnerChoice {
  /** `webgpu` (default) or `cpu` (the reference, for checking). */
  readonly backend?: "webgpu" | "cpu";
  /** A WebGPU entry point (e.g. Dawn's in Node); when given, `webgpu` is not consulted. */
  readonly gpu?: GPU;
  /**
   * Where `gpu` comes from when neither `gpu` nor `device` is given: `dawn` (the optional
   * npm package `webgpu`), `deno` (Deno's built-in), or `auto` (default: Dawn when it loads
   * and finds an adapter, else the built-in `navigator.gpu`). See `resolveWebGpu`.
   */
  readonly webgpu?: "auto" | "dawn" | "deno";
  /** A ready device; the engine then leaves its destruction to the caller. */
  readonly device?: GPUDevice;
  /** For URL sources: the fetch to use. */
  readonly fetch?: typeof fetch;
  /**
   * Tuning: the shape of the single-row matrix-vector kernels (see `MatrixKernelsOptions`):
   * `auto` (default) picks per adapter; `blocks`, `workgroup` or `lanes` force one, for
   * measuring them against each other on a new GPU.
   */
  readonly matvecShape?: "auto" | "lanes" | "workgroup" | "blocks";
  /**
   * Tuning: the element type of the WebGPU runner's KV pool: `auto` (default) picks f32
   * where it costs no pages, else f16 (twice the pages for the bytes). `f32` keeps keys and
   * values exact, e.g. for checks that compare outputs across batch shapes: with f16, the
   * last-bit differences between batched and single-row kernels can flip an f16 rounding.
   * The CPU runner always stores f32.
   */
  readonly kvCacheType?: "auto" | "f32" | "f16";
}


export type { RunnerSizes };

export async function loadRunner(file: GGUFFile, choice: RunnerChoice, sizes: RunnerSizes): Promise<ModelRunner> {
  const backend = choice.backend ?? "webgpu";
  if (backend === "cpu") return CpuRunner.load(file, sizes);
  if (backend === "webgpu") {
    // A caller's own GPU or device wins; otherwise the provider is resolved first, because
    // Dawn installs WebGPU's globals (GPUBufferUsage, …) that a CPU-only Node lacks and
    // the GPU modules, loaded on demand after it, use.
    const injected = choice.gpu !== undefined || choice.device !== undefined;
    const { resolveWebGpu } = await import("../gpu/provider.ts");
    const { gpu, provider } = injected
      ? { gpu: choice.gpu, provider: undefined }
      : await resolveWebGpu(choice.webgpu ?? "auto");
    const { GpuRunner } = await import("../model/gpu-runner.ts");
    return GpuRunner.load(file, {
      ...sizes,
      gpu,
      provider,
      device: choice.device,
      matrix: { matvecShape: choice.matvecShape },
      kvCacheType: choice.kvCacheType,
    });
  }
  throw new InvalidRequestError("backend", `unknown backend "${String(backend)}" (webgpu or cpu)`);
}
