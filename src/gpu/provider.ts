/**
 * Where the `GPU` object comes from: Dawn (the npm package `webgpu`) in Node and Deno, or
 * the runtime's own `navigator.gpu` (Deno's built-in WebGPU, or a browser's).
 *
 * ```ts
 * const { gpu, provider } = await resolveWebGpu("auto");   // Dawn if it finds an adapter, else navigator.gpu
 * const ctx = await createGpuContext({ gpu });
 * const us = await measureRoundTrip(ctx.device);            // one empty submit + map, median µs
 * ```
 *
 * Why two providers: Deno's built-in WebGPU resolves every `mapAsync` about 11 ms after
 * the call whatever the work, while Dawn answers in tens of microseconds, so a decode loop
 * that reads tokens back runs far faster on Dawn. Dawn is an optional dependency (132 MB
 * of native binaries): it is imported by a computed specifier only when asked for or in
 * `auto` outside a browser, so bundlers and the browser build never pull it in.
 */
import { GpuError } from "../errors.ts";
import { withTimeout } from "../timeout.ts";
import { captureNativeStderr, ensureRuntimeDir } from "./native-quiet.ts";

/** The implementations of WebGPU we can run on. */
export type WebGpuProvider = "dawn" | "deno" | "browser";

/** What a caller asks for: a provider, or `auto` (Dawn when it finds an adapter, else built-in). */
export type WebGpuChoice = "auto" | WebGpuProvider;

/** A `GPU` entry point and the implementation behind it. */
export interface ResolvedWebGpu {
  readonly gpu: GPU;
  readonly provider: WebGpuProvider;
}

/** The npm package that ships Dawn for Node (and Deno through npm), and the version we test. */
export const DAWN_PACKAGE = "webgpu";
export const DAWN_VERSION = "0.6.2";

/** How to give Dawn an adapter on a machine without a GPU driver it accepts. */
export const DAWN_ADAPTER_HINT =
  "Dawn needs a Vulkan (Linux), Metal or D3D12 driver it accepts; on a machine without one, install Chromium " +
  "(Debian: apt-get install chromium) and set VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json " +
  "to use its SwiftShader (Mesa's lavapipe lacks a Vulkan feature Dawn requires)";

/** The runtime this code runs in, which decides what `auto` tries and how the built-in is named. */
type Runtime = "deno" | "node" | "browser";

function currentRuntime(): Runtime {
  if ("Deno" in globalThis) return "deno";
  const proc: unknown = Reflect.get(globalThis, "process");
  const versions: unknown = typeof proc === "object" && proc !== null ? Reflect.get(proc, "versions") : undefined;
  if (typeof versions === "object" && versions !== null && "node" in versions) return "node";
  return "browser";
}

/** The two exports of the `webgpu` package that we use. */
interface DawnModule {
  create(flags: string[]): GPU;
  globals: Record<string, unknown>;
}

function isDawnModule(value: unknown): value is DawnModule {
  if (typeof value !== "object" || value === null) return false;
  return typeof Reflect.get(value, "create") === "function" && typeof Reflect.get(value, "globals") === "object";
}

/** One Dawn instance per process: each `create()` would start its own, with its own adapters. */
let dawnInstance: Promise<GPU> | undefined;

/** Loads the package, installs its globals where missing, and creates the instance (once). */
function dawnGpu(): Promise<GPU> {
  dawnInstance ??= loadDawn().catch((error: unknown) => {
    dawnInstance = undefined; // a later call (after installing the package) may succeed
    throw error;
  });
  return dawnInstance;
}

async function loadDawn(): Promise<GPU> {
  // A computed specifier: bundlers (Vite) leave it alone, so the browser build never
  // resolves or ships the native package, and type-checking does not need it installed.
  const specifier: string = DAWN_PACKAGE;
  let module: unknown;
  try {
    module = await import(/* @vite-ignore */ specifier);
  } catch (cause) {
    throw new GpuError(
      "NO_WEBGPU",
      `Dawn is not available: the optional npm package "${DAWN_PACKAGE}" did not load (npm install ${DAWN_PACKAGE}@${DAWN_VERSION}): ${messageOf(cause)}`,
      {},
      { cause },
    );
  }
  if (!isDawnModule(module)) {
    throw new GpuError("NO_WEBGPU", `the npm package "${DAWN_PACKAGE}" does not export create() and globals; expected version ${DAWN_VERSION}`);
  }
  // Our kernels use WebGPU's global constants (GPUBufferUsage, GPUMapMode, …). Node has
  // none; Deno has its own, which stay: Dawn accepts the same numeric values.
  for (const [name, value] of Object.entries(module.globals)) {
    if (!(name in globalThis)) Object.defineProperty(globalThis, name, { value, writable: true, configurable: true });
  }
  // Dawn rounds timestamp-query results to 65.5 µs by default (a browser's defence against
  // timing attacks by web pages); `bench --profile` needs them as the GPU reports them.
  const dawn = module;
  return captureNativeStderr(() => dawn.create(["disable-dawn-features=timestamp_quantization"])).value;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message.split("\n")[0]! : String(error);
}

/**
 * Dawn's `GPU`, once it has shown that it finds an adapter. Dawn enumerates adapters inside
 * `requestAdapter()` itself, and prints a warning for each it refuses (lavapipe); that text
 * is captured (see native-quiet.ts) and becomes part of NO_ADAPTER instead of stderr noise.
 */
async function resolveDawn(): Promise<ResolvedWebGpu> {
  const gpu = await dawnGpu();
  const request = captureNativeStderr(() => gpu.requestAdapter({ powerPreference: "high-performance" }));
  const adapter = await request.value;
  if (!adapter) {
    const said = dawnSaid(request.stderr);
    throw new GpuError("NO_ADAPTER", `Dawn found no GPU adapter${said ? ` (Dawn: ${said})` : ""}. ${DAWN_ADAPTER_HINT}`);
  }
  return { gpu, provider: "dawn" };
}

/** Dawn's reasons for refusing adapters, one line each, without its source locations. */
function dawnSaid(stderr: string): string {
  const reasons = stderr.split("\n").map((line) => line.trim()).filter((line) => /^(Warning|Error):/.test(line));
  return [...new Set(reasons)].join("; ");
}

/** The runtime's own `navigator.gpu`. */
function resolveBuiltIn(runtime: Runtime, asked: WebGpuChoice): ResolvedWebGpu {
  if (asked === "deno" && runtime !== "deno") {
    throw new GpuError("NO_WEBGPU", `--webgpu deno needs Deno's built-in WebGPU, but this runs in ${runtime === "node" ? "Node" : "a browser"}; use dawn or auto`);
  }
  const gpu = typeof navigator !== "undefined" ? navigator.gpu : undefined;
  if (!gpu) {
    const hint = runtime === "node" ? `Node has no built-in WebGPU: install Dawn (npm install ${DAWN_PACKAGE}@${DAWN_VERSION})` : "navigator.gpu is undefined";
    throw new GpuError("NO_WEBGPU", `WebGPU is not available here: ${hint}`);
  }
  return { gpu, provider: runtime === "deno" ? "deno" : "browser" };
}

/**
 * Finds the `GPU` entry point for `kind`:
 * - `dawn`: the npm package `webgpu` (NO_WEBGPU if it does not load, NO_ADAPTER with a hint if it finds no adapter);
 * - `deno`: Deno's built-in `navigator.gpu` (NO_WEBGPU outside Deno);
 * - `browser`: `navigator.gpu` wherever it exists;
 * - `auto`: Dawn outside a browser when it loads and finds an adapter, else the built-in.
 * The adapter is requested again by whoever makes the device; Dawn keeps one instance per process.
 * On Linux it first gives the process an `XDG_RUNTIME_DIR` when it has none (see
 * {@link ensureRuntimeDir}), so the Vulkan drivers do not print errors about it; Dawn's
 * warnings about adapters it refuses go into its NO_ADAPTER error, not to stderr.
 */
export async function resolveWebGpu(kind: WebGpuChoice = "auto"): Promise<ResolvedWebGpu> {
  const runtime = currentRuntime();
  // Before any Vulkan instance exists (Dawn's or the built-in's): see native-quiet.ts.
  ensureRuntimeDir();
  switch (kind) {
    case "dawn":
      return resolveDawn();
    case "deno":
    case "browser":
      return resolveBuiltIn(runtime, kind);
    case "auto": {
      if (runtime === "browser") return resolveBuiltIn(runtime, kind);
      try {
        return await resolveDawn();
      } catch (error) {
        // Dawn absent or adapter-less: the built-in is the answer, unless there is none either.
        if (!(error instanceof GpuError)) throw error;
        try {
          return resolveBuiltIn(runtime, kind);
        } catch {
          throw error;
        }
      }
    }
    default:
      throw new GpuError("NO_WEBGPU", `unknown WebGPU provider "${String(kind)}" (auto, dawn, deno or browser)`);
  }
}

/** A short name of an adapter for logs and `bench`: its description, else vendor and architecture. */
export function adapterName(info: GPUAdapterInfo | undefined): string {
  if (!info) return "unknown adapter";
  if (info.description) return info.description;
  const parts = [info.vendor, info.architecture, info.device].filter((p) => p);
  return parts.length > 0 ? parts.join(" ") : "unknown adapter";
}

/** Options of {@link measureRoundTrip}. */
export interface RoundTripOptions {
  /** Round trips measured after 3 warm-ups (default 20); the median is returned. */
  readonly samples?: number;
  /** Bound on each wait, ms (default 10 s): a stuck device becomes GPU_TIMEOUT. */
  readonly timeoutMs?: number;
}

/**
 * The median time, in microseconds, from submitting a 16-byte copy into a mappable buffer
 * to having its mapping: the floor under any decode loop that reads tokens back. Deno's
 * built-in WebGPU gives about 11,000 µs whatever the GPU; Dawn tens of µs on a GPU.
 */
export async function measureRoundTrip(device: GPUDevice, options: RoundTripOptions = {}): Promise<number> {
  const samples = Math.max(1, Math.floor(options.samples ?? 20));
  const timeoutMs = options.timeoutMs ?? 10_000;
  device.pushErrorScope("out-of-memory");
  device.pushErrorScope("validation");
  const source = device.createBuffer({ label: "roundtrip-source", size: 16, usage: GPUBufferUsage.COPY_SRC });
  const target = device.createBuffer({ label: "roundtrip-target", size: 16, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ });
  const [validation, oom] = await Promise.all([device.popErrorScope(), device.popErrorScope()]);
  try {
    const failed = validation ?? oom;
    if (failed) throw new GpuError("GPU_VALIDATION", `round-trip probe buffers: ${failed.message}`, { label: "roundtrip" });
    const times: number[] = [];
    for (let i = 0; i < samples + 3; i++) {
      const start = performance.now();
      const encoder = device.createCommandEncoder({ label: "roundtrip" });
      encoder.copyBufferToBuffer(source, 0, target, 0, 16);
      device.queue.submit([encoder.finish()]);
      await withTimeout(target.mapAsync(GPUMapMode.READ), timeoutMs, () => new GpuError("GPU_TIMEOUT", `round-trip map did not finish within ${timeoutMs} ms`));
      target.unmap();
      if (i >= 3) times.push((performance.now() - start) * 1000);
    }
    times.sort((a, b) => a - b);
    return times[times.length >> 1]!;
  } finally {
    source.destroy();
    target.destroy();
  }
}

/** What {@link probeWebGpu} found. */
export interface WebGpuProbe {
  readonly provider: WebGpuProvider;
  /** {@link adapterName} of the adapter a device is made on. */
  readonly adapter: string;
  /** {@link measureRoundTrip} on a fresh device of that adapter. */
  readonly roundTripUs: number;
}

/**
 * Resolves `kind`, makes a short-lived device on its adapter, measures its round trip and
 * destroys it: what `bench --json` reports as `webgpu`, `adapter` and `roundtrip_us`.
 */
export async function probeWebGpu(kind: WebGpuChoice = "auto", options: RoundTripOptions = {}): Promise<WebGpuProbe> {
  const { gpu, provider } = await resolveWebGpu(kind);
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) throw new GpuError("NO_ADAPTER", `${provider} WebGPU returned no adapter`);
  const device = await adapter.requestDevice({ label: "webgpu-llm roundtrip probe" });
  try {
    return { provider, adapter: adapterName(adapter.info), roundTripUs: await measureRoundTrip(device, options) };
  } finally {
    device.destroy();
  }
}

