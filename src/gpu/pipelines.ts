/**
 * Compiled compute pipelines, cached by variant.
 *
 * A kernel family turns its typed key (say `{ type: GGMLType.Q4_0, bias: true }`) into a
 * {@link KernelVariant}: a unique name (also the pipeline's label, so errors and GPU
 * captures name it), the shader file and the defines. The cache compiles each name once.
 *
 * ```ts
 * const variant: KernelVariant = { name: "matvec_Q4_0_wg128_r4", file: "matvec.wgsl", defines: { Q4_0: true } };
 * const pipeline = await ctx_pipelines.getAsync(variant); // compile errors → GpuError SHADER_COMPILE
 * const same = ctx_pipelines.get(variant);                // sync; cached
 * ```
 *
 * `getAsync` is the checked path (compilation messages and validation errors become a
 * GpuError naming the variant); `get` compiles synchronously when a variant was not
 * prepared, and its errors then surface as uncaptured errors on the context. Kernels offer
 * a `prepare()` that awaits every variant they will record, before recording starts.
 */
import { GpuError } from "../errors.ts";
import { preprocessShader, type ShaderDefines } from "./shader-source.ts";

/** One concrete kernel: everything needed to compile it. */
export interface KernelVariant {
  /** Unique across all families; used as the cache key and as the pipeline label. */
  readonly name: string;
  /** Embedded shader file, e.g. `matvec.wgsl`. */
  readonly file: string;
  readonly defines: ShaderDefines;
  /** Defaults to `main`. */
  readonly entryPoint?: string;
}

/**
 * Pipelines already compiled on a device, by entry point and WGSL text, shared by every
 * {@link PipelineCache} of that device. An engine disposed and loaded again on a caller's
 * device then reuses them instead of compiling new ones: compiling is most of a load on a
 * software GPU, and a pipeline is freed only once the garbage collector drops its last
 * reference (WebGPU gives it no `destroy()`), so fresh ones per load piled up as native
 * memory that V8 does not see (about 10 MB per load on lavapipe). The store is bounded by
 * the variants the kernels can make, and goes with the device (a WeakMap key).
 */
const compiledOnDevice = new WeakMap<GPUDevice, Map<string, GPUComputePipeline>>();

function compiledStore(device: GPUDevice): Map<string, GPUComputePipeline> {
  let store = compiledOnDevice.get(device);
  if (!store) {
    store = new Map();
    compiledOnDevice.set(device, store);
  }
  return store;
}

/** Drops the shared pipelines of `device` (when it is destroyed: nothing can use them again). */
export function forgetCompiledPipelines(device: GPUDevice): void {
  compiledOnDevice.delete(device);
}

/** The shared store's key: what decides the compiled code, whatever the variant's name says. */
function compiledKey(variant: KernelVariant, code: string): string {
  return `${variant.entryPoint ?? "main"}\n${code}`;
}

/** Caches pipelines by variant name for one device. */
export class PipelineCache {
  readonly device: GPUDevice;
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  private readonly pending = new Map<string, Promise<GPUComputePipeline>>();
  /** While set, compilations stop with its reason once it aborts (see {@link abortCompilesOn}). */
  private abortSignal: AbortSignal | undefined;
  /** While set, hears of compilations asked for and finished (see {@link reportCompilesTo}). */
  private compileListener: ((done: number, total: number) => void) | undefined;
  private compilesAsked = 0;
  private compilesDone = 0;

  constructor(device: GPUDevice) {
    this.device = device;
  }

  /** Number of compiled pipelines. */
  get size(): number {
    return this.pipelines.size;
  }

  /**
   * Forgets this cache's pipelines (at the context's destroy). WebGPU has no `destroy()`
   * for a pipeline: it is freed once nothing references it, so the cache must let go of
   * it. The device's shared store keeps them for the next cache (see
   * {@link forgetCompiledPipelines}).
   */
  clear(): void {
    this.pipelines.clear();
    this.pending.clear();
  }

  /** The WGSL text of a variant (for reading or dumping). */
  source(variant: KernelVariant): string {
    return preprocessShader(variant.file, variant.defines);
  }

  /** Returns the cached pipeline, compiling it synchronously if needed (errors are uncaptured). */
  get(variant: KernelVariant): GPUComputePipeline {
    const cached = this.pipelines.get(variant.name);
    if (cached) return cached;
    const code = this.source(variant);
    const key = compiledKey(variant, code);
    // Read from the shared store, never written: a pipeline made here is unchecked (its
    // errors are uncaptured) and must not outlive this cache.
    let pipeline = compiledStore(this.device).get(key);
    if (!pipeline) {
      const module = this.device.createShaderModule({ label: variant.name, code });
      pipeline = this.device.createComputePipeline({
        label: variant.name,
        layout: "auto",
        compute: { module, entryPoint: variant.entryPoint ?? "main" },
      });
    }
    this.pipelines.set(variant.name, pipeline);
    return pipeline;
  }

  /**
   * Until the returned function is called, every compilation checks `signal` before it starts
   * and after each wait, and rejects with its reason once it has aborted: a model load that
   * is cancelled (Ctrl-C, `dispose()`) stops between pipelines instead of compiling all of
   * them (2 s for a 1B model on lavapipe). The kernels' `prepare()` take no signal, hence here.
   */
  abortCompilesOn(signal: AbortSignal | undefined): () => void {
    this.abortSignal = signal;
    return () => {
      if (this.abortSignal === signal) this.abortSignal = undefined;
    };
  }

  /**
   * Until the returned function is called, `listener` hears `(done, total)` whenever a
   * compilation through {@link getAsync} is asked for or finishes (`done <= total`; total
   * grows while the kernels ask): a load's progress can then show its compile step, which
   * is most of a load on a software GPU.
   */
  reportCompilesTo(listener: (done: number, total: number) => void): () => void {
    this.compileListener = listener;
    this.compilesAsked = 0;
    this.compilesDone = 0;
    return () => {
      if (this.compileListener === listener) this.compileListener = undefined;
    };
  }

  /** Compiles (once) and returns the pipeline; throws GpuError SHADER_COMPILE naming the variant. */
  getAsync(variant: KernelVariant): Promise<GPUComputePipeline> {
    const cached = this.pipelines.get(variant.name);
    if (cached) return Promise.resolve(cached);
    let pending = this.pending.get(variant.name);
    if (!pending) {
      this.compileListener?.(this.compilesDone, ++this.compilesAsked);
      pending = this.compile(variant).finally(() => {
        this.pending.delete(variant.name);
        this.compileListener?.(++this.compilesDone, this.compilesAsked);
      });
      this.pending.set(variant.name, pending);
    }
    return pending;
  }

  private async compile(variant: KernelVariant): Promise<GPUComputePipeline> {
    const signal = this.abortSignal;
    signal?.throwIfAborted();
    const code = this.source(variant);
    const key = compiledKey(variant, code);
    const shared = compiledStore(this.device).get(key);
    if (shared) {
      this.pipelines.set(variant.name, shared);
      return shared;
    }
    this.device.pushErrorScope("validation");
    const module = this.device.createShaderModule({ label: variant.name, code });
    const info = await module.getCompilationInfo();
    const scopeError = await this.device.popErrorScope();
    signal?.throwIfAborted();
    const errors = info.messages.filter((m) => m.type === "error");
    if (errors.length > 0 || scopeError) {
      const detail = errors.map((m) => `line ${m.lineNum}:${m.linePos}: ${m.message}`).join("\n") || scopeError?.message;
      throw new GpuError("SHADER_COMPILE", `shader variant ${variant.name} (${variant.file}) failed to compile:\n${detail}`, {
        label: variant.name,
      });
    }
    let pipeline: GPUComputePipeline;
    try {
      pipeline = await this.device.createComputePipelineAsync({
        label: variant.name,
        layout: "auto",
        compute: { module, entryPoint: variant.entryPoint ?? "main" },
      });
    } catch (cause) {
      throw new GpuError("SHADER_COMPILE", `pipeline ${variant.name} (${variant.file}) failed: ${String(cause)}`, { label: variant.name }, { cause });
    }
    this.pipelines.set(variant.name, pipeline);
    compiledStore(this.device).set(key, pipeline);
    signal?.throwIfAborted(); // kept all the same: a later load on this device reuses it
    return pipeline;
  }
}
