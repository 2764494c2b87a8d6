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
 * await ctx.destroy();  // destroys every buffer of ctx.allocator, then the device if we made it
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
import { GpuAllocator } from "./buffers.ts";
import { PipelineCache } from "./pipelines.ts";

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
  /** Frees every tracked buffer, then the device if `ownsDevice`. Idempotent. */
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
  let failure: GpuError | null = null;
  let destroyed = false;
  const fail = (error: GpuError): void => {
    // A lost device explains every error that came before it (work submitted to a
    // destroyed device fails validation first): the loss is the reason to report.
    if (failure === null || (error.code === "DEVICE_LOST" && failure.code !== "DEVICE_LOST")) failure = error;
  };
  device.lost.then((info) => {
    // Our own destroy() also resolves `lost` (reason "destroyed"): that is not a failure.
    // An injected device destroyed by its owner under us is one.
    if (destroyed) return;
    const why = info.reason === "destroyed" ? "the device was destroyed" : info.message || "no reason given";
    fail(new GpuError("DEVICE_LOST", `GPU device lost: ${why}`));
  });
  device.addEventListener("uncapturederror", (event) => {
    const error = (event as GPUUncapturedErrorEvent).error;
    const oom = typeof GPUOutOfMemoryError !== "undefined" && error instanceof GPUOutOfMemoryError;
    fail(new GpuError(oom ? "OUT_OF_MEMORY" : "GPU_VALIDATION", `uncaptured WebGPU error: ${error.message}`));
  });
  const allocator = new GpuAllocator(device, { maxStorageBindingSize: limits.maxStorageBufferBindingSize });

  const ctx: GpuContext = {
    device,
    adapterInfo,
    features,
    limits,
    ownsDevice,
    allocator,
    pipelines: new PipelineCache(device),
    get failure() {
      return failure;
    },
    check() {
      if (failure) throw failure;
    },
    async finish(timeoutMs = 30_000) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new GpuError("GPU_TIMEOUT", `GPU work did not finish within ${timeoutMs} ms`)),
          timeoutMs,
        );
      });
      try {
        await Promise.race([device.queue.onSubmittedWorkDone(), timeout]);
      } finally {
        clearTimeout(timer);
      }
      if (failure) throw failure;
    },
    async destroy() {
      if (destroyed) return;
      allocator.destroyAll();
      destroyed = true;
      if (ownsDevice) device.destroy();
    },
  };
  return ctx;
}

/**
 * Whether the adapter is Mesa's lavapipe (Vulkan on the CPU): some kernels take another
 * shape there (a CPU runs a work-group's invocations as SIMD lanes of one thread).
 */
export function isLavapipe(ctx: GpuContext): boolean {
  const info = ctx.adapterInfo;
  return info !== undefined && /llvmpipe|lavapipe/i.test(`${info.description} ${info.device} ${info.architecture} ${info.vendor}`);
}
