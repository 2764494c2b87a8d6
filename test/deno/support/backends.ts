/** The backends every engine-level suite runs on here. */
import type { EngineOptions } from "../../../src/engine/engine.ts";

export interface TestBackend {
  readonly name: string;
  readonly options: EngineOptions;
  /** Create-generate-dispose cycles of the lifecycle stress test. */
  readonly cycles: number;
}

export const BACKENDS: readonly TestBackend[] = [
  { name: "cpu", options: { backend: "cpu" }, cycles: 20 },
  // Deno's built-in WebGPU: Mesa's lavapipe here, a real GPU elsewhere.
  { name: "webgpu", options: { backend: "webgpu" }, cycles: 100 },
];
