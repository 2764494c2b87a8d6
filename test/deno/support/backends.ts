/**
 * The backends every engine-level suite runs on here:
 * - `cpu`: the reference runner;
 * - `webgpu`: the WebGPU runner on Deno's built-in WebGPU (Mesa's lavapipe here), when it
 *   finds an adapter;
 * - `webgpu-dawn`: the same runner on Dawn (the npm package `webgpu`; Chromium's
 *   SwiftShader here), when `DAWN_VK_ICD` names its Vulkan driver (see
 *   test/node/dawn/dawn-env.ts). Both WebGPU providers then run in one process.
 *
 * `TEST_BACKENDS=cpu,webgpu-dawn` (names, comma-separated) runs only those; a name that
 * is asked for but cannot run here fails loudly rather than being skipped.
 */
import type { EngineOptions } from "../../../src/engine/engine.ts";
import { DAWN_ENV, dawnIcd, primeDawn } from "../../node/dawn/dawn-env.ts";

export interface TestBackend {
  readonly name: string;
  readonly options: EngineOptions;
  /** Create-generate-dispose cycles of the lifecycle stress test. */
  readonly cycles: number;
  /**
   * A software device far slower than the others (Dawn on SwiftShader: ~12× lavapipe,
   * pipelines take tens of seconds to compile): suites keep its engines and tokens few.
   */
  readonly slow: boolean;
}

const CANDIDATES: readonly TestBackend[] = [
  { name: "cpu", options: { backend: "cpu" }, cycles: 20, slow: false },
  { name: "webgpu", options: { backend: "webgpu", webgpu: "deno" }, cycles: 10, slow: false },
  { name: "webgpu-dawn", options: { backend: "webgpu", webgpu: "dawn" }, cycles: 2, slow: true },
];

/** Why a backend cannot run here, or undefined when it can. */
async function unavailable(name: string): Promise<string | undefined> {
  switch (name) {
    case "webgpu": {
      const adapter = await navigator.gpu?.requestAdapter();
      return adapter ? undefined : "Deno's navigator.gpu finds no adapter";
    }
    case "webgpu-dawn": {
      if (dawnIcd() === undefined) return `${DAWN_ENV} is not set`;
      // Fails loudly (package missing, no adapter) once DAWN_VK_ICD says Dawn must work.
      await primeDawn();
      return undefined;
    }
    default:
      return undefined;
  }
}

async function selectBackends(): Promise<TestBackend[]> {
  const asked = Deno.env.get("TEST_BACKENDS")?.split(",").map((s) => s.trim()).filter((s) => s);
  const chosen: TestBackend[] = [];
  for (const backend of CANDIDATES) {
    if (asked && !asked.includes(backend.name)) continue;
    const reason = await unavailable(backend.name);
    if (reason === undefined) chosen.push(backend);
    else if (asked) throw new Error(`TEST_BACKENDS asks for ${backend.name}, but ${reason}`);
  }
  const unknown = asked?.filter((n) => !CANDIDATES.some((b) => b.name === n)) ?? [];
  if (unknown.length > 0) throw new Error(`TEST_BACKENDS: unknown backend ${unknown.join(", ")} (${CANDIDATES.map((b) => b.name).join(", ")})`);
  return chosen;
}

export const BACKENDS: readonly TestBackend[] = await selectBackends();
