/**
 * The engine under Node on Dawn (the npm package `webgpu`): the only WebGPU Node has.
 * Runs where `DAWN_VK_ICD` is set (see dawn-env.ts; here Chromium's SwiftShader, about 12×
 * slower than lavapipe, so one tiny model and one engine). Expected tokens come from the
 * CPU reference backend on the same file; the provider checks need no adapter.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadEngine, type Engine } from "../../../src/engine/engine.ts";
import type { GenerateOptions } from "../../../src/engine/types.ts";
import { GpuError } from "../../../src/errors.ts";
import { adapterName, measureRoundTrip, probeWebGpu, resolveWebGpu, type WebGpuChoice } from "../../../src/gpu/provider.ts";
import { syntheticModelPath } from "../support/fixtures.ts";
import { DAWN_ENV, dawnIcd, primeDawn } from "./dawn-env.ts";

const GREEDY: GenerateOptions = { temperature: 0, maxTokens: 10, ignoreEos: true };
/** Every sampling stage on: the GPU sampler draws from the same (seed, index) counters as the CPU's. */
const SEEDED: GenerateOptions = {
  temperature: 0.9, topK: 20, topP: 0.9, minP: 0.02, repeatPenalty: 1.1, presencePenalty: 0.2, frequencyPenalty: 0.1,
  seed: 7, maxTokens: 10, ignoreEos: true,
};
const PROMPTS = ["The quick brown fox", "Once upon a time"];

describe("WebGPU providers under Node (no adapter needed)", () => {
  it("refuses Deno's built-in and the browser's navigator.gpu, which Node lacks, as NO_WEBGPU", async () => {
    for (const kind of ["deno", "browser"] as const) {
      const error = await resolveWebGpu(kind).then(() => undefined, (e: unknown) => e);
      expect(error).toBeInstanceOf(GpuError);
      expect((error as GpuError).code).toBe("NO_WEBGPU");
      expect((error as GpuError).message).toMatch(/Node/);
    }
  });

  it("names an unknown provider in its error", async () => {
    const error = await resolveWebGpu("vulkan" as WebGpuChoice).then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(GpuError);
    expect((error as GpuError).message).toContain('"vulkan"');
  });
});

describe.skipIf(dawnIcd() === undefined)(`Dawn under Node (${DAWN_ENV}=${dawnIcd() ?? "unset"})`, () => {
  let engine: Engine;
  let reference: { greedy: number[][]; seeded: number[][]; text: string[] };
  const model = syntheticModelPath("llama", "Q8_0");

  beforeAll(async () => {
    const { gpu } = await primeDawn();
    const path = await model;
    const cpu = await loadEngine(path, { backend: "cpu", maxSequences: 2 });
    try {
      const greedy = await Promise.all(PROMPTS.map((p) => cpu.generate(p, GREEDY).result));
      const seeded = await Promise.all(PROMPTS.map((p) => cpu.generate(p, SEEDED).result));
      reference = { greedy: greedy.map((r) => [...r.tokens]), seeded: seeded.map((r) => [...r.tokens]), text: greedy.map((r) => r.text) };
    } finally {
      await cpu.dispose();
    }
    engine = await loadEngine(path, { backend: "webgpu", gpu, maxSequences: 2 });
  });

  afterAll(async () => {
    await engine?.dispose();
  });

  it("resolves dawn, and auto to dawn (Node has no built-in WebGPU), to the one Dawn instance", async () => {
    const dawn = await resolveWebGpu("dawn");
    const auto = await resolveWebGpu("auto");
    expect(dawn.provider).toBe("dawn");
    expect(auto.provider).toBe("dawn");
    expect(auto.gpu).toBe(dawn.gpu);
    expect(typeof GPUBufferUsage.STORAGE).toBe("number"); // Dawn's globals were installed
  });

  it("measures a submit-and-map round trip well under Deno's 11 ms poll", async () => {
    const probe = await probeWebGpu("dawn", { samples: 20 });
    expect(probe.provider).toBe("dawn");
    expect(probe.adapter.length).toBeGreaterThan(0);
    // Dawn answers a map in ~0.1–0.5 ms on SwiftShader here and ~50 µs on a GPU; a loop
    // that waited on a periodic poll (Deno's built-in: ~11,000 µs) would fail this.
    expect(probe.roundTripUs).toBeGreaterThan(0);
    expect(probe.roundTripUs).toBeLessThan(5000);

    const { gpu } = await resolveWebGpu("dawn");
    const device = await (await gpu.requestAdapter())!.requestDevice();
    try {
      const us = await measureRoundTrip(device, { samples: 5 });
      expect(us).toBeGreaterThan(0);
      expect(us).toBeLessThan(5000);
    } finally {
      device.destroy();
    }
  });

  it("describes its adapter", async () => {
    const adapter = await (await resolveWebGpu("dawn")).gpu.requestAdapter();
    expect(engine.description).toMatch(/^webgpu/);
    expect(engine.description).toContain(adapterName(adapter!.info));
  });

  it("generates the CPU reference's greedy tokens and text", async () => {
    const results = await Promise.all(PROMPTS.map((p) => engine.generate(p, GREEDY).result));
    expect(results.map((r) => [...r.tokens])).toEqual(reference.greedy);
    expect(results.map((r) => r.text)).toEqual(reference.text);
  });

  it("draws the CPU reference's tokens from the same seed, with every sampling stage on", async () => {
    const results = await Promise.all(PROMPTS.map((p) => engine.generate(p, SEEDED).result));
    expect(results.map((r) => [...r.tokens])).toEqual(reference.seeded);
  });

  it("gives every buffer back on dispose", async () => {
    expect(engine.memory().liveBuffers).toBeGreaterThan(0);
    await engine.dispose();
    expect(engine.memory()).toEqual({ liveBuffers: 0, liveBytes: 0 });
  });
});
