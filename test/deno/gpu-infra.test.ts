/**
 * Device, allocator, pipeline cache and step/arena on a real WebGPU adapter.
 * Run: deno test -A test/deno/gpu-infra.test.ts
 */
import assert from "node:assert/strict";
import { GpuError, InvalidArgumentError } from "../../src/errors.ts";
import { GGMLType } from "../../src/gguf/ggml-type.ts";
import { quantize } from "../../src/gguf/quant/index.ts";
import { BindGroupCache } from "../../src/gpu/bind-cache.ts";
import { createGpuContext, isSoftwareAdapter, isSoftwareAdapterInfo, planLimits } from "../../src/gpu/device.ts";
import { defaultSubmitWork } from "../../src/model/gpu-runner.ts";
import { MatrixKernels, matrixVariant } from "../../src/gpu/kernels/matmul.ts";
import { GpuStep, ParamArena, splitWorkgroups } from "../../src/gpu/step.ts";
import { uploadWeight } from "../../src/gpu/weights.ts";

const STORAGE_RW = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

Deno.test("context: features, limits raised to the adapter's, typed LIMIT_TOO_LOW", async () => {
  const adapter = await navigator.gpu.requestAdapter();
  assert.ok(adapter);
  const ctx = await createGpuContext();
  try {
    assert.equal(ctx.ownsDevice, true);
    assert.equal(ctx.features.f16, adapter.features.has("shader-f16"));
    assert.equal(ctx.features.subgroups, adapter.features.has("subgroups"));
    assert.equal(ctx.limits.maxStorageBufferBindingSize, adapter.limits.maxStorageBufferBindingSize);
    assert.equal(ctx.limits.maxBufferSize, adapter.limits.maxBufferSize);
    assert.equal(ctx.failure, null);
  } finally {
    await ctx.destroy();
  }
  const needed = adapter.limits.maxBufferSize * 2;
  assert.throws(
    () => planLimits(adapter.limits, { maxBufferSize: needed }),
    (e) => e instanceof GpuError && e.code === "LIMIT_TOO_LOW" && e.limit === "maxBufferSize" && e.needed === needed,
  );
  await assert.rejects(createGpuContext({ requiredLimits: { maxBufferSize: needed } }), (e) => e instanceof GpuError && e.code === "LIMIT_TOO_LOW");
});

Deno.test("context: an injected device is not destroyed by us", async () => {
  const adapter = await navigator.gpu.requestAdapter();
  assert.ok(adapter);
  const device = await adapter.requestDevice();
  const ctx = await createGpuContext({ device });
  assert.equal(ctx.ownsDevice, false);
  const buffer = ctx.allocator.createBuffer({ label: "kept", size: 16, usage: STORAGE_RW });
  await ctx.destroy();
  assert.equal(ctx.allocator.liveBuffers, 0, "destroy() frees the allocator's buffers");
  // The device still works after the context is gone.
  device.pushErrorScope("validation");
  const still = device.createBuffer({ size: 16, usage: STORAGE_RW });
  device.queue.writeBuffer(still, 0, new Uint32Array([1, 2, 3, 4]));
  assert.equal(await device.popErrorScope(), null);
  still.destroy();
  assert.equal(buffer.label, "kept");
  device.destroy();
});

Deno.test("allocator: accounting, checked failures, write and read back at odd offsets", async () => {
  const ctx = await createGpuContext();
  try {
    const a = ctx.allocator;
    const b1 = a.createBuffer({ label: "b1", size: 10, usage: STORAGE_RW }); // padded to 12
    const b2 = await a.createBufferWithData("b2", new Uint8Array([1, 2, 3, 4, 5, 6, 7]), STORAGE_RW);
    assert.equal(a.liveBuffers, 2);
    assert.equal(a.liveBytes, 12 + 8);
    await assert.rejects(
      a.createBufferChecked({ label: "too big", size: ctx.limits.maxBufferSize + 4, usage: GPUBufferUsage.STORAGE }),
      (e) => e instanceof GpuError && (e.code === "GPU_VALIDATION" || e.code === "OUT_OF_MEMORY") && e.label === "too big",
    );
    assert.equal(a.liveBuffers, 2, "a failed allocation is not counted");
    const data = Float32Array.from({ length: 100 }, (_, i) => i * 0.5);
    const b3 = a.createBuffer({ label: "b3", size: 400, usage: STORAGE_RW });
    a.writeBuffer(b3, 0, data);
    assert.deepEqual(new Float32Array(await a.readBuffer(b3, 12, 40)), data.subarray(3, 13));
    assert.deepEqual(new Uint8Array(await a.readBuffer(b2, 1, 5)), new Uint8Array([2, 3, 4, 5, 6]));
    assert.equal(a.peakBytes >= 12 + 8 + 400, true);
    a.destroy(b1);
    a.destroy(b1); // a second destroy is a no-op
    assert.equal(a.liveBuffers, 2);
    a.destroyAll();
    assert.equal(a.liveBuffers, 0);
    assert.equal(a.liveBytes, 0);
    ctx.check();
  } finally {
    await ctx.destroy();
  }
});

Deno.test("context: an uncaptured validation error becomes ctx.failure", async () => {
  const ctx = await createGpuContext();
  try {
    // MAP_READ cannot be combined with STORAGE: a validation error nobody captures.
    ctx.allocator.createBuffer({ label: "invalid usage", size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.STORAGE });
    await assert.rejects(ctx.finish(), (e) => e instanceof GpuError && e.code === "GPU_VALIDATION");
    assert.throws(() => ctx.check(), (e) => e instanceof GpuError && e.code === "GPU_VALIDATION");
  } finally {
    await ctx.destroy();
  }
});

Deno.test("pipelines: cached by variant name; a compile error is a GpuError naming the variant", async () => {
  const ctx = await createGpuContext();
  try {
    const key = { kernel: "matvec", type: GGMLType.Q4_0, bias: false, padCols: false, workgroupSize: 64, rowsPerWorkgroup: 4, subgroups: false } as const;
    const variant = matrixVariant(key);
    const p1 = await ctx.pipelines.getAsync(variant);
    assert.equal(p1.label, variant.name);
    assert.equal(ctx.pipelines.get(variant), p1);
    const broken = { name: "matvec_broken", file: "matvec.wgsl", defines: { ...variant.defines, WG: "1.5" } };
    await assert.rejects(ctx.pipelines.getAsync(broken), (e) => e instanceof GpuError && e.code === "SHADER_COMPILE" && e.label === "matvec_broken");
  } finally {
    await ctx.destroy();
  }
});

Deno.test("step: 2,000 dispatches in one pass, params arena over several chunks, a copy mid-step", async () => {
  const ctx = await createGpuContext();
  try {
    // A 1×32 F32 "weight" of ones times x[i .. i + 32) writes y[i] = Σ x (small integers, so
    // exact): each dispatch has its own offsets, so a params slot overwritten by a later
    // dispatch would show.
    const ones = quantize(GGMLType.F32, new Float32Array(32).fill(1));
    const w = await uploadWeight(ctx, { type: GGMLType.F32, shape: [32, 1], bytes: ones }, "ones");
    const count = 2000;
    const x = Float32Array.from({ length: count + 32 }, (_, i) => (i % 7) - 3);
    const xBuf = await ctx.allocator.createBufferWithData("x", x, STORAGE_RW);
    const yBuf = ctx.allocator.createBuffer({ label: "y", size: count * 4, usage: STORAGE_RW });
    const copy = ctx.allocator.createBuffer({ label: "copy", size: count * 4, usage: STORAGE_RW });
    const kernels = new MatrixKernels(ctx);
    await kernels.prepare([w], { families: ["matvec"] });
    const arena = new ParamArena(ctx.allocator, ctx.limits.minUniformBufferOffsetAlignment);
    const step = new GpuStep(ctx, arena, "many");
    for (let i = 0; i < count / 2; i++) kernels.matvec(step, w, xBuf, yBuf, { xOffset: i, yOffset: i });
    step.copyBuffer(yBuf, 0, copy, 0, (count / 2) * 4);
    for (let i = count / 2; i < count; i++) kernels.matvec(step, w, xBuf, yBuf, { xOffset: i, yOffset: i });
    assert.equal(step.dispatchCount, count);
    const arenaBuffers = ctx.allocator.liveBuffers;
    step.submit();
    assert.throws(() => step.submit(), (e) => e instanceof InvalidArgumentError && /already submitted/.test(e.message));
    const y = new Float32Array(await ctx.allocator.readBuffer(yBuf, 0, count * 4));
    const copied = new Float32Array(await ctx.allocator.readBuffer(copy, 0, (count / 2) * 4));
    for (let i = 0; i < count; i++) {
      let sum = 0;
      for (let k = 0; k < 32; k++) sum += x[i + k];
      assert.equal(y[i], sum, `y[${i}]`);
      if (i < count / 2) assert.equal(copied[i], sum, `copy[${i}]`);
    }
    // A second step reuses the arena's chunks instead of allocating new ones.
    const again = new GpuStep(ctx, arena, "again");
    for (let i = 0; i < count; i++) kernels.matvec(again, w, xBuf, yBuf, { xOffset: i, yOffset: i });
    again.submit();
    assert.equal(ctx.allocator.liveBuffers, arenaBuffers);
    await ctx.finish();
    arena.destroy();
  } finally {
    await ctx.destroy();
  }
  assert.equal(ctx.allocator.liveBuffers, 0);
});

Deno.test("bind-group cache: found again by buffers and params, params in one pool buffer, null once full", async () => {
  const ctx = await createGpuContext();
  try {
    const kernels = new MatrixKernels(ctx, { matvecShape: "workgroup" });
    const w = await uploadWeight(ctx, { type: GGMLType.Q8_0, shape: [64, 4], bytes: quantize(GGMLType.Q8_0, new Float32Array(256).fill(0.5)) }, "w");
    const pipeline = ctx.pipelines.get(matrixVariant(kernels.key("matvec", w, false)));
    const x = ctx.allocator.createBuffer({ label: "x", size: 256, usage: STORAGE_RW });
    const x2 = ctx.allocator.createBuffer({ label: "x2", size: 256, usage: STORAGE_RW });
    const y = ctx.allocator.createBuffer({ label: "y", size: 16, usage: STORAGE_RW });
    const entries = (xb: GPUBuffer): GPUBindGroupEntry[] => [
      { binding: 0, resource: { buffer: w.parts[0]!.buffer } },
      { binding: 1, resource: { buffer: xb } },
      { binding: 5, resource: { buffer: xb } },
      { binding: 2, resource: { buffer: y } },
    ];
    const params = (n: number) => new Uint32Array([4, 4, 64, w.rowWords, w.parts[0]!.scaleWord, 2, 0, 0, 0, 1, n, 0, 0, 1]);
    const before = ctx.allocator.liveBuffers;
    const cache = new BindGroupCache(ctx, 3);
    const a = cache.get(pipeline, entries(x), params(1));
    assert.ok(a);
    assert.equal(cache.get(pipeline, entries(x), params(1)), a, "same buffers and params: the same group");
    const other = [cache.get(pipeline, entries(x2), params(1)), cache.get(pipeline, entries(x), params(2))];
    assert.ok(other.every((g) => g !== null && g !== a), "another buffer or other params: another group");
    assert.equal(cache.size, 3);
    assert.equal(cache.get(pipeline, entries(x2), params(2)), null, "full: null (the caller records with its arena)");
    assert.equal(ctx.allocator.liveBuffers, before + 1, "three params slots share one pool buffer");
    cache.destroy();
    assert.equal(ctx.allocator.liveBuffers, before);
    assert.equal(cache.size, 0);
    kernels.destroy();
  } finally {
    await ctx.destroy();
  }
});

Deno.test("splitWorkgroups keeps each dimension within the limit and covers the count", () => {
  for (const [count, max] of [[10, 4], [9, 3], [65535, 65535], [65536, 65535], [200000, 65535], [7, 7]]) {
    const [x, y] = splitWorkgroups(count, max);
    assert.ok(x <= max && y <= max && x * y >= count && x * (y - 1) < count, `${count} / ${max} → ${x}×${y}`);
  }
});

Deno.test("weights: a part written in slices holds the bytes a part filled at once does, and the load yields between slices", async () => {
  const ctx = await createGpuContext();
  try {
    // Q4_K splits its scales from the quants; F32 rows of 40 values are padded to whole chunks.
    const cases = [
      { type: GGMLType.Q4_K, shape: [256, 37] },
      { type: GGMLType.F32, shape: [40, 33] },
    ];
    for (const { type, shape } of cases) {
      const values = Float32Array.from({ length: shape[0]! * shape[1]! }, (_, i) => Math.sin(i * 0.37));
      const source = { type, shape, bytes: quantize(type, values) };
      const whole = await uploadWeight(ctx, source, "whole");
      let yields = 0;
      const channel = new MessageChannel(); // counts event-loop turns taken while slicing
      channel.port1.onmessage = () => {
        yields++;
        if (!done) channel.port2.postMessage(null);
      };
      let done = false;
      channel.port2.postMessage(null);
      const sliced = await uploadWeight(ctx, source, "sliced", { sliceBytes: 1024 });
      done = true;
      channel.port1.close();
      const size = whole.parts[0]!.byteLength;
      assert.equal(sliced.parts[0]!.byteLength, size);
      const [a, b] = await Promise.all([
        ctx.allocator.readBuffer(whole.parts[0]!.buffer, 0, size),
        ctx.allocator.readBuffer(sliced.parts[0]!.buffer, 0, size),
      ]);
      assert.deepEqual(new Uint8Array(b), new Uint8Array(a), `${GGMLType[type]}: same bytes`);
      assert.ok(yields > 3, `${GGMLType[type]}: the event loop ran between slices (${yields} turns)`);
    }
    // An abort between slices stops the upload and destroys its buffer.
    const before = ctx.allocator.liveBuffers;
    const abort = new AbortController();
    const big = { type: GGMLType.F32, shape: [64, 64], bytes: quantize(GGMLType.F32, new Float32Array(64 * 64)) };
    const upload = uploadWeight(ctx, big, "aborted", { sliceBytes: 1024, signal: abort.signal });
    abort.abort(new Error("stop"));
    await assert.rejects(upload, /stop/);
    assert.equal(ctx.allocator.liveBuffers, before);
  } finally {
    await ctx.destroy();
  }
});

Deno.test("context: a software adapter is known as one, and gets the small submission budget", async () => {
  // The real adapter here is lavapipe (Deno) or SwiftShader (Dawn): both run on the CPU,
  // where a GPU's 4e10-multiply-add submission takes a minute and passes the wait's bound.
  const ctx = await createGpuContext();
  try {
    assert.equal(isSoftwareAdapter(ctx), true, JSON.stringify(ctx.adapterInfo));
    assert.equal(defaultSubmitWork(ctx), 4e9);
  } finally {
    await ctx.destroy();
  }
  const info = (fields: Partial<GPUAdapterInfo>) => ({ vendor: "", architecture: "", device: "", description: "", ...fields }) as GPUAdapterInfo;
  assert.equal(isSoftwareAdapterInfo(info({ vendor: "google", architecture: "swiftshader", description: "SwiftShader Device (Subzero)" })), true);
  assert.equal(isSoftwareAdapterInfo(info({ vendor: "nvidia", architecture: "hopper", description: "NVIDIA H100 80GB HBM3" })), false);
  assert.equal(isSoftwareAdapterInfo({ ...info({ vendor: "unknown" }), isFallbackAdapter: true } as GPUAdapterInfo), true);
  assert.equal(isSoftwareAdapterInfo(undefined), false);
});
