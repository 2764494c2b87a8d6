/**
 * Soak script (not a test): loads and disposes the model again and again in one process
 * and reports the process's resident memory (RSS) and the time of each cycle, to show
 * whether anything of a disposed engine stays behind.
 *
 *   deno run -A bench/soak.ts --cycles 200 [--own-device|--caller-device] [--webgpu deno|dawn] [--tokens 4] [--json]
 *
 * A cycle is `createEngine` → `ready` → a short greedy generation → `dispose()`, then a
 * full garbage collection (through `node:v8`'s `--expose-gc`; `--no-gc` skips it), then
 * RSS is read: what is left after the collection is what something still holds. `--own-device` (default) lets
 * each engine request and destroy its own device; `--caller-device` makes one device up
 * front and hands it to every engine (`createEngine(src, { device })`), which must leave
 * it untouched. `--webgpu dawn` runs on Dawn (the npm package `webgpu`); on a machine
 * without a GPU set `DAWN_VK_ICD=/usr/lib/chromium/vk_swiftshader_icd.json`.
 *
 * Prints a line every `--every` cycles (default 10) and a summary; `--json` prints one
 * JSON object instead ({@link SoakReport}), which test/deno/soak-memory.test.ts reads.
 */
import v8 from "node:v8";
import vm from "node:vm";
import { parseArgs } from "../src/cli/args.ts";
import { createEngine, type EngineOptions } from "../src/engine/engine.ts";
import { createGpuContext } from "../src/gpu/device.ts";
import { resolveWebGpu } from "../src/gpu/provider.ts";
import { DEFAULT_MODEL_PATH } from "../src/cli/default-model.ts";
import { dawnIcd, primeDawn } from "../test/node/dawn/dawn-env.ts";

/** One measured cycle. */
export interface SoakCycle {
  /** 0 is the baseline before the first load; cycle n is measured after the n-th dispose. */
  readonly cycle: number;
  /** Resident set size after a full garbage collection, bytes. */
  readonly rss: number;
  /** V8 heap in use after the collection, bytes. */
  readonly heapUsed: number;
  /** Memory of JavaScript objects held outside the V8 heap (ArrayBuffers…), bytes. */
  readonly external: number;
  /** Wall time of the cycle (load, generate, dispose), ms; 0 for the baseline. */
  readonly ms: number;
  /** Threads of the process (Linux; -1 elsewhere): a device that leaves its threads behind shows here. */
  readonly threads: number;
}

/** What `--json` prints. */
export interface SoakReport {
  readonly webgpu: "deno" | "dawn";
  readonly device: "own" | "caller";
  readonly model: string;
  /** Whether a full collection ran before each measurement. */
  readonly gc: boolean;
  readonly cycles: SoakCycle[];
}

const parsed = parseArgs(Deno.args, {
  name: "soak",
  summary: "Loads and disposes the model repeatedly and reports RSS and time per cycle.",
  flags: {
    cycles: { type: "number", integer: true, min: 1, default: 200, placeholder: "n", description: "load/dispose cycles" },
    ownDevice: { type: "boolean", description: "each engine makes and destroys its own device (the default)" },
    callerDevice: { type: "boolean", description: "one device made here and handed to every engine" },
    webgpu: { type: "string", default: "deno", placeholder: "deno|dawn", description: "which WebGPU implementation" },
    model: { type: "string", placeholder: "path", description: "model (default: the embedded one)" },
    tokens: { type: "number", integer: true, min: 0, default: 4, placeholder: "n", description: "tokens generated per cycle (0: load and dispose only)" },
    every: { type: "number", integer: true, min: 1, default: 10, placeholder: "n", description: "print every n-th cycle" },
    noGc: { type: "boolean", description: "measure without forcing a garbage collection first (what a process sees when V8 decides)" },
    json: { type: "boolean", description: "print one JSON object only" },
  },
});
if (parsed.help) {
  console.log(parsed.text);
  Deno.exit(0);
}
const f = parsed.flags;
if (f.ownDevice && f.callerDevice) {
  console.error("soak: --own-device and --caller-device exclude each other");
  Deno.exit(2);
}
if (f.webgpu !== "deno" && f.webgpu !== "dawn") {
  console.error(`soak: --webgpu is deno or dawn, got "${f.webgpu}"`);
  Deno.exit(2);
}
const webgpu: "deno" | "dawn" = f.webgpu;
const mode: "own" | "caller" = f.callerDevice ? "caller" : "own";
const model = f.model ?? DEFAULT_MODEL_PATH;

v8.setFlagsFromString("--expose-gc");
const collectGarbage = vm.runInNewContext("gc") as () => void;

/** RSS and heap after a full collection (twice: finalizers of the first may free more), unless --no-gc. */
function measure(cycle: number, ms: number): SoakCycle {
  if (!f.noGc) {
    collectGarbage();
    collectGarbage();
  }
  const m = Deno.memoryUsage();
  return { cycle, rss: m.rss, heapUsed: m.heapUsed, external: m.external, ms, threads: threadCount() };
}

function threadCount(): number {
  try {
    return Number(/^Threads:\s+(\d+)/m.exec(Deno.readTextFileSync("/proc/self/status"))?.[1] ?? -1);
  } catch {
    return -1;
  }
}

/** The `GPU` of the implementation asked for (Dawn primed with `DAWN_VK_ICD`'s driver). */
async function gpuOf(kind: "deno" | "dawn"): Promise<GPU> {
  if (kind === "dawn" && dawnIcd() !== undefined) return (await primeDawn()).gpu;
  return (await resolveWebGpu(kind)).gpu;
}

const gpu = await gpuOf(webgpu);
const callerContext = mode === "caller" ? await createGpuContext({ gpu }) : undefined;
const options: EngineOptions = callerContext ? { device: callerContext.device } : { gpu };

const MB = 1024 * 1024;
const line = (c: SoakCycle): string =>
  `cycle ${String(c.cycle).padStart(4)}  rss ${(c.rss / MB).toFixed(1).padStart(7)} MB  heap ${(c.heapUsed / MB).toFixed(1).padStart(6)} MB  ` +
  `external ${(c.external / MB).toFixed(1).padStart(6)} MB  threads ${c.threads}  ${c.ms.toFixed(0).padStart(5)} ms`;

if (!f.json) {
  console.log(`soak: ${f.cycles} cycles, ${webgpu} WebGPU, ${mode} device, ${model}, ${f.tokens} tokens per cycle${f.noGc ? ", no forced GC" : ""}`);
}
const cycles: SoakCycle[] = [measure(0, 0)];
if (!f.json) console.log(line(cycles[0]!));
for (let n = 1; n <= f.cycles; n++) {
  const start = performance.now();
  const engine = createEngine(model, { ...options, maxSequences: 1, maxBatchTokens: 64 });
  try {
    await engine.ready;
    if (f.tokens > 0) await engine.generate("The meaning of life is", { maxTokens: f.tokens, temperature: 0 }).result;
  } finally {
    await engine.dispose();
  }
  const c = measure(n, performance.now() - start);
  cycles.push(c);
  if (!f.json && (n % f.every === 0 || n === 1)) console.log(line(c));
}
if (callerContext) {
  // The caller's device must still work after every engine that used it is gone.
  await callerContext.finish();
  await callerContext.destroy();
}

if (f.json) {
  const report: SoakReport = { webgpu, device: mode, model, gc: !f.noGc, cycles };
  console.log(JSON.stringify(report));
} else {
  const at = (n: number) => cycles[Math.min(n, cycles.length - 1)]!;
  const meanMs = (from: number, to: number) => {
    const slice = cycles.slice(Math.max(1, from), to + 1);
    return slice.reduce((s, c) => s + c.ms, 0) / Math.max(1, slice.length);
  };
  const last = cycles.length - 1;
  const marks = [0, 50, 100, 150, 200].filter((n) => n <= last);
  if (!marks.includes(last)) marks.push(last);
  console.log(`rss: ${marks.map((n) => `${n}: ${(at(n).rss / MB).toFixed(0)} MB`).join(", ")}`);
  const from = last > 10 ? 10 : 0;
  console.log(`growth from cycle ${from} to ${last}: ${((at(last).rss - at(from).rss) / MB / Math.max(1, last - from)).toFixed(2)} MB/cycle`);
  console.log(`time per cycle: ${meanMs(1, 10).toFixed(0)} ms (cycles 1-10), ${meanMs(last - 9, last).toFixed(0)} ms (last 10)`);
}
