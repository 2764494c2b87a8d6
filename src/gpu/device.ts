/**
 * The WebGPU device, its capabilities, and its failures as typed errors.
 *
 * ```ts
 * const ctx = await createGpuContext();           // navigator.gpu, or { gpu } / { device }
 * ctx.features.f16; ctx.limits.maxStorageBufferBindingSize;
 * const buf = ctx.allocator.createBuffer({ label: "x", size: 1024, usage: GPUBufferUsage.STORAGE });
 * const pipeline = await ctx.pipelines.getAsync(variant);
 * ...
 * ctx.check();          // throws the first device-lost / uncaptured error as a GpuError
 * await ctx.destroy();  // destroys every buffer of ctx.allocator, then the device if we made it,
 *                       // and resolves once that device reports itself lost
 * ```
 *
 * We ask for the adapter's maximum storage-binding and buffer sizes (a 1B model's embedding
 * table in F16 is 500 MiB; the WebGPU defaults are 128/256 MiB) and for `shader-f16` /
 * `subgroups` when offered. Kernels read `ctx.features` to choose a variant; nothing assumes
 * a feature the adapter lacks. Dawn reports allocation and validation failures as uncaptured
 * errors rather than exceptions, so every context listens for them and keeps the first one
 * in `failure`; code that awaits the GPU calls `check()` afterwards.
 */
import { GpuError } from "../errors.ts";
import { withIdleTimeout, withTimeout } from "../timeout.ts";
import { GpuAllocator } from "./buffers.ts";
import { forgetCompiledPipelines, PipelineCache } from "./pipelines.ts";

/** Optional features the kernels can use. */
export interface GpuFeatures {
  /** `shader-f16`: `enable f16;` and f16 arithmetic in WGSL. */
  readonly f16: boolean;
  /** `subgroups`: subgroupAdd etc. (Chromium/Dawn; Deno does not expose it). */
  readonly subgroups: boolean;
  /** `timestamp-query`: GPU timings for benchmarks. */
  readonly timestampQuery: boolean;
}

/** Limits a caller may raise above what we request by default (or lower for tests). */
export type GpuLimitRequest = Partial<Record<GpuLimitName, number>>;

/** Names of the numeric limits in GPUSupportedLimits that we request. */
export type GpuLimitName =
  | "maxStorageBufferBindingSize"
  | "maxBufferSize"
  | "maxComputeWorkgroupStorageSize"
  | "maxComputeInvocationsPerWorkgroup"
  | "maxComputeWorkgroupSizeX"
  | "maxComputeWorkgroupSizeY"
  | "maxComputeWorkgroupsPerDimension"
  | "maxStorageBuffersPerShaderStage"
  | "maxUniformBufferBindingSize";

/** Options of {@link createGpuContext}. */
export interface GpuContextOptions {
  /** The WebGPU entry point (defaults to `navigator.gpu`); e.g. Dawn's `create([])` in Node. */
  gpu?: GPU;
  /** Use this device instead of requesting one; it is not destroyed by `destroy()`. */
  device?: GPUDevice;
  /** Raise the minimum limits needed; the request fails with LIMIT_TOO_LOW when the adapter has less. */
  requiredLimits?: GpuLimitRequest;
  /** `high-performance` by default. */
  powerPreference?: GPUPowerPreference;
  /** Do not enable these optional features even when offered (tests of fallback paths). */
  disableFeatures?: readonly ("shader-f16" | "subgroups")[];
  /**
   * Lower limits as seen by our code (`ctx.limits`), not by the device: lets tests exercise
   * weight splitting, binding windows and 2-D grids with small data.
   */
  limitOverrides?: GpuLimitRequest;
  /**
   * How long `destroy()` waits for our own device to report itself lost once destroyed
   * (and for the last submitted work before that), ms; default 5000.
   */
  destroyTimeoutMs?: number;
}

/** A ready device with what we know about it. */
export interface GpuContext {
  readonly device: GPUDevice;
  /** Adapter vendor/architecture/description (undefined when the implementation does not say). */
  readonly adapterInfo: GPUAdapterInfo | undefined;
  readonly features: GpuFeatures;
  /** The limits our code plans with (the device's, unless overridden for tests). */
  readonly limits: GpuLimits;
  /** True when `destroy()` destroys the device (we requested it). */
  readonly ownsDevice: boolean;
  /** The default allocator; `destroy()` frees every buffer it still tracks. */
  readonly allocator: GpuAllocator;
  /** Compiled pipelines of this device, by variant name. */
  readonly pipelines: PipelineCache;
  /** First device loss or uncaptured error, as a typed error; null while healthy. */
  readonly failure: GpuError | null;
  /** Throws `failure` if set. */
  check(): void;
  /**
   * Resolves when all submitted work is done; rejects with GPU_TIMEOUT after `timeoutMs`
   * (default 30 s) so that a hung submission becomes an error, and with `failure` if set.
   */
  finish(timeoutMs?: number): Promise<void>;
  /**
   * Submits `commands` and notes when they are done, so that {@link GpuContext.whileProgressing}
   * can tell a long queue of finishing submissions from a hung one. Submit through here
   * whatever a bounded wait may wait on.
   */
  submit(commands: readonly GPUCommandBuffer[]): void;
  /**
   * Settles with `work`, or rejects with `onTimeout()` once no submission made through
   * {@link GpuContext.submit} has finished for `idleMs`: the bound on waiting for the GPU is
   * on its silence, not on the total, which on a software adapter can be minutes of
   * legitimate work (a 1B model's prefill in Chromium on SwiftShader).
   */
  whileProgressing<T>(work: Promise<T>, idleMs: number, onTimeout: () => Error): Promise<T>;
  /**
   * Calls `listener` with `failure` whenever a loss or uncaptured error arrives, until
   * `destroy()`. Subscribe here rather than on the device: a listener on the device would
   * outlive this context on a caller's device and keep whatever it reaches alive.
   */
  onFailure(listener: (error: GpuError) => void): void;
  /**
   * Releases everything: waits (bounded) for the submitted work, stops listening to the
   * device, destroys every tracked buffer, forgets the pipelines, and when `ownsDevice`
   * destroys the device and resolves once its `lost` promise has (rejecting with GpuError
   * DEVICE_DESTROY_TIMEOUT after `destroyTimeoutMs` if it never does). A caller's device is
   * left usable. Idempotent: every call returns the same promise.
   */
  destroy(): Promise<void>;
}

/** The numeric limits kernels plan with. */
export type GpuLimits = Readonly<Record<GpuLimitName | "minUniformBufferOffsetAlignment" | "minStorageBufferOffsetAlignment", number>>;

/** What we need at minimum to run the kernels (WebGPU's defaults, except work-group storage). */
const MINIMUM_LIMITS: Readonly<Record<GpuLimitName, number>> = {
  maxStorageBufferBindingSize: 128 * 1024 * 1024,
  maxBufferSize: 256 * 1024 * 1024,
  maxComputeWorkgroupStorageSize: 16384,
  maxComputeInvocationsPerWorkgroup: 256,
  maxComputeWorkgroupSizeX: 256,
  maxComputeWorkgroupSizeY: 256,
  maxComputeWorkgroupsPerDimension: 65535,
  maxStorageBuffersPerShaderStage: 8,
  maxUniformBufferBindingSize: 16384,
};

/** Limits we raise to the adapter's maximum because bigger means fewer splits and larger tiles. */
const RAISE_TO_ADAPTER_MAX: readonly GpuLimitName[] = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxStorageBuffersPerShaderStage",
];

/** Requests an adapter and device (or adopts `options.device`) and wires up error reporting. */
export async function createGpuContext(options: GpuContextOptions = {}): Promise<GpuContext> {
  // `GPUDevice.adapterInfo` is recent; older implementations lack it.
  if (options.device) return makeContext(options.device, options.device.adapterInfo as GPUAdapterInfo | undefined, false, options);
  const gpu = options.gpu ?? (typeof navigator !== "undefined" ? navigator.gpu : undefined);
  if (!gpu) throw new GpuError("NO_WEBGPU", "WebGPU is not available here (navigator.gpu is undefined)");
  const adapter = await gpu.requestAdapter({ powerPreference: options.powerPreference ?? "high-performance" });
  if (!adapter) throw new GpuError("NO_ADAPTER", "navigator.gpu.requestAdapter() returned no adapter");

  const requiredLimits = planLimits(adapter.limits, options.requiredLimits ?? {});
  const disabled = new Set<string>(options.disableFeatures ?? []);
  const requiredFeatures: GPUFeatureName[] = [];
  for (const name of ["shader-f16", "subgroups", "timestamp-query"] as const) {
    if (adapter.features.has(name) && !disabled.has(name)) requiredFeatures.push(name);
  }
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({ requiredFeatures, requiredLimits, label: "webgpu-llm" });
  } catch (cause) {
    throw new GpuError("NO_ADAPTER", `requestDevice failed: ${String(cause)}`, {}, { cause });
  }
  return makeContext(device, adapter.info, true, options);
}

/** Chooses requested limits; throws LIMIT_TOO_LOW naming the first limit the adapter cannot meet. */
export function planLimits(adapterLimits: GPUSupportedLimits, extra: GpuLimitRequest): Record<string, number> {
  const out: Record<string, number> = {};
  for (const name of Object.keys(MINIMUM_LIMITS) as GpuLimitName[]) {
    const needed = Math.max(MINIMUM_LIMITS[name], extra[name] ?? 0);
    const available = adapterLimits[name];
    if (available < needed) {
      throw new GpuError("LIMIT_TOO_LOW", `adapter limit ${name} is ${available}, need ${needed}`, {
        limit: name,
        needed,
        available,
      });
    }
    out[name] = RAISE_TO_ADAPTER_MAX.includes(name) ? available : needed;
  }
  return out;
}

function makeContext(device: GPUDevice, adapterInfo: GPUAdapterInfo | undefined, ownsDevice: boolean, options: GpuContextOptions): GpuContext {
  const features: GpuFeatures = {
    f16: device.features.has("shader-f16") && !(options.disableFeatures ?? []).includes("shader-f16"),
    subgroups: device.features.has("subgroups") && !(options.disableFeatures ?? []).includes("subgroups"),
    timestampQuery: device.features.has("timestamp-query"),
  };
  const dl = device.limits;
  const own = (name: GpuLimitName): number => Math.min(dl[name], options.limitOverrides?.[name] ?? Infinity);
  const limits: GpuLimits = {
    maxStorageBufferBindingSize: own("maxStorageBufferBindingSize"),
    maxBufferSize: own("maxBufferSize"),
    maxComputeWorkgroupStorageSize: own("maxComputeWorkgroupStorageSize"),
    maxComputeInvocationsPerWorkgroup: own("maxComputeInvocationsPerWorkgroup"),
    maxComputeWorkgroupSizeX: own("maxComputeWorkgroupSizeX"),
    maxComputeWorkgroupSizeY: own("maxComputeWorkgroupSizeY"),
    maxComputeWorkgroupsPerDimension: own("maxComputeWorkgroupsPerDimension"),
    maxStorageBuffersPerShaderStage: own("maxStorageBuffersPerShaderStage"),
    maxUniformBufferBindingSize: own("maxUniformBufferBindingSize"),
    minUniformBufferOffsetAlignment: dl.minUniformBufferOffsetAlignment,
    minStorageBufferOffsetAlignment: dl.minStorageBufferOffsetAlignment,
  };
  const watch = new DeviceWatch(device);
  const allocator = new GpuAllocator(device, { maxStorageBindingSize: limits.maxStorageBufferBindingSize });
  const pipelines = new PipelineCache(device);
  const destroyTimeoutMs = options.destroyTimeoutMs ?? DEFAULT_DESTROY_TIMEOUT_MS;
  let destroying: Promise<void> | undefined;
  let lastDoneAt = Date.now();
  const noteDone = (): void => {
    lastDoneAt = Date.now();
  };

  const ctx: GpuContext = {
    device,
    adapterInfo,
    features,
    limits,
    ownsDevice,
    allocator,
    pipelines,
    get failure() {
      return watch.failure;
    },
    check() {
      if (watch.failure) throw watch.failure;
    },
    onFailure(listener) {
      watch.listen(listener);
    },
    async finish(timeoutMs = 30_000) {
      await withTimeout(device.queue.onSubmittedWorkDone(), timeoutMs, () => new GpuError("GPU_TIMEOUT", `GPU work did not finish within ${timeoutMs} ms`));
      if (watch.failure) throw watch.failure;
    },
    submit(commands) {
      device.queue.submit(commands);
      // A loss or hang rejects or never settles this; the wait that cares has its own bound.
      device.queue.onSubmittedWorkDone().then(noteDone, () => {});
    },
    whileProgressing(work, idleMs, onTimeout) {
      return withIdleTimeout(work, idleMs, () => lastDoneAt, onTimeout);
    },
    destroy() {
      destroying ??= releaseDevice(device, ownsDevice, watch, allocator, pipelines, destroyTimeoutMs);
      return destroying;
    },
  };
  return ctx;
}

/** How long `destroy()` waits for a destroyed device's `lost` promise by default. */
const DEFAULT_DESTROY_TIMEOUT_MS = 5_000;

/**
 * The body of `GpuContext.destroy()`: waits for the submitted work, detaches our
 * listeners, destroys every tracked buffer, forgets the pipelines, and (for our own device)
 * destroys the device and waits until it reports itself lost.
 *
 * Why each part: a listener left on a caller's device keeps what it reaches alive for as
 * long as that device lives (every disposed runner used to stay, with its compiled
 * pipelines: about 25 MB per load on lavapipe); a pipeline is freed only once nothing
 * references it, as WebGPU has no `destroy()` for it (a caller's device keeps one shared
 * set of them for every engine it serves instead); and the device's `lost` promise is
 * the implementation's word that the device is gone, so a caller who awaits `destroy()`
 * may start the next device without the last one's still being torn down.
 */
async function releaseDevice(
  device: GPUDevice,
  ownsDevice: boolean,
  watch: DeviceWatch,
  allocator: GpuAllocator,
  pipelines: PipelineCache,
  destroyTimeoutMs: number,
): Promise<void> {
  // From here a loss is our doing, not a failure to report.
  watch.detach();
  // Destroying a buffer that queued work still reads is allowed, but waiting first makes
  // the release deterministic. The wait is bounded and its outcome ignored: a lost or hung
  // device must still be released (destroying it is how a hang ends), and a lost one has
  // no work left to wait for.
  const workDone = Promise.race([device.queue.onSubmittedWorkDone(), device.lost]);
  await withTimeout(workDone, destroyTimeoutMs, () => new GpuError("GPU_TIMEOUT", "")).catch(() => undefined);
  allocator.destroyAll();
  pipelines.clear();
  // A caller's device keeps the compiled pipelines for the next engine on it (bounded by
  // the kernels' variants; see pipelines.ts); ours is going, and them with it.
  if (!ownsDevice) return;
  forgetCompiledPipelines(device);
  device.destroy();
  await withTimeout(device.lost, destroyTimeoutMs, () =>
    new GpuError(
      "DEVICE_DESTROY_TIMEOUT",
      `the WebGPU device "${device.label}" was destroyed but did not report itself lost within ${destroyTimeoutMs} ms (GpuContextOptions.destroyTimeoutMs)`,
      { label: device.label },
    ));
}

/**
 * Turns a device's loss and uncaptured errors into the context's first {@link GpuError}
 * and tells subscribers. `detach()` removes the event listener and drops every subscriber,
 * so that afterwards the device (a caller's may live on) reaches nothing of ours but this
 * small object, through the `lost` handler that cannot be removed.
 */
class DeviceWatch {
  failure: GpuError | null = null;
  #device: GPUDevice | undefined;
  #listeners: ((error: GpuError) => void)[] = [];
  readonly #onUncaptured = (event: Event): void => {
    const error = (event as GPUUncapturedErrorEvent).error;
    const oom = typeof GPUOutOfMemoryError !== "undefined" && error instanceof GPUOutOfMemoryError;
    this.#fail(new GpuError(oom ? "OUT_OF_MEMORY" : "GPU_VALIDATION", `uncaptured WebGPU error: ${error.message}`));
  };

  constructor(device: GPUDevice) {
    this.#device = device;
    device.addEventListener("uncapturederror", this.#onUncaptured);
    device.lost.then((info) => {
      // Our own destroy() also resolves `lost` (reason "destroyed"), after detach(): not a
      // failure. An injected device destroyed by its owner under us is one.
      if (this.#device === undefined) return;
      const why = info.reason === "destroyed" ? "the device was destroyed" : info.message || "no reason given";
      this.#fail(new GpuError("DEVICE_LOST", `GPU device lost: ${why}`));
    });
  }

  /** Calls `listener` with the context's failure on every loss or uncaptured error, until detached. */
  listen(listener: (error: GpuError) => void): void {
    if (this.#device === undefined) return;
    this.#listeners.push(listener);
  }

  /** Stops listening; the failure seen so far stays readable. */
  detach(): void {
    this.#device?.removeEventListener("uncapturederror", this.#onUncaptured);
    this.#device = undefined;
    this.#listeners = [];
  }

  #fail(error: GpuError): void {
    // A lost device explains every error that came before it (work submitted to a
    // destroyed device fails validation first): the loss is the reason to report.
    const first = this.failure === null;
    if (first || (error.code === "DEVICE_LOST" && this.failure?.code !== "DEVICE_LOST")) this.failure = error;
    for (const listener of this.#listeners) listener(this.failure!);
  }
}

/**
 * Whether the adapter is Mesa's lavapipe (Vulkan on the CPU): some kernels take another
 * shape there (a CPU runs a work-group's invocations as SIMD lanes of one thread).
 */
export function isLavapipe(ctx: GpuContext): boolean {
  return describesAdapter(ctx.adapterInfo, /llvmpipe|lavapipe/i);
}

/**
 * Whether the adapter runs on the CPU (lavapipe, SwiftShader, or one that says it is a
 * fallback adapter): there a GPU's few milliseconds of work take seconds, so work is
 * submitted in smaller parts (see GpuRunnerOptions.maxSubmitWork).
 */
export function isSoftwareAdapter(ctx: GpuContext): boolean {
  return isSoftwareAdapterInfo(ctx.adapterInfo);
}

/** {@link isSoftwareAdapter} from the adapter's description alone. */
export function isSoftwareAdapterInfo(info: GPUAdapterInfo | undefined): boolean {
  const fallback = (info as { isFallbackAdapter?: boolean } | undefined)?.isFallbackAdapter === true;
  return fallback || describesAdapter(info, /llvmpipe|lavapipe|swiftshader/i);
}

function describesAdapter(info: GPUAdapterInfo | undefined, pattern: RegExp): boolean {
  return info !== undefined && pattern.test(`${info.description} ${info.device} ${info.architecture} ${info.vendor}`);
}
