/**
 * Disposing an engine while it loads a local file stops the load where it is (between file
 * chunks, tensors, weight parts and pipelines), rejects `ready` with EngineDisposedError
 * and leaves no GPU buffer behind.
 *
 * Real parts throughout: the embedded model, Deno's WebGPU. The engine runs on a device
 * this test made, whose `createBuffer` and `createComputePipelineAsync` are wrapped to
 * record what the engine creates (the real methods still do the work): that is how the test
 * sees that every buffer was destroyed, and how it disposes at a real event, the start of a
 * given pipeline's compilation, rather than after a guessed time.
 */
import assert from "node:assert/strict";
import { createEngine, type Engine } from "../../src/engine/engine.ts";
import { EngineDisposedError } from "../../src/engine/errors.ts";
import { createGpuContext, type GpuContext } from "../../src/gpu/device.ts";
import { GGMLType } from "../../src/gguf/ggml-type.ts";
import { openSource } from "../../src/gguf/source.ts";
import { uploadWeight } from "../../src/gpu/weights.ts";

const MODEL = new URL("../../models/tiny-fortunes-q8_0.gguf", import.meta.url).pathname;

/** A device of our own whose buffer and pipeline creations are recorded. */
interface RecordedDevice {
  readonly device: GPUDevice;
  /** Buffers created and not (yet) destroyed. */
  readonly live: Set<GPUBuffer>;
  readonly created: { buffers: number; pipelines: number };
  /** Called at the start of every async pipeline creation, with its 1-based index. */
  onPipeline: (index: number) => void;
  destroy(): Promise<void>;
}

async function recordedDevice(): Promise<RecordedDevice> {
  const owner: GpuContext = await createGpuContext({ gpu: navigator.gpu });
  const device = owner.device;
  const live = new Set<GPUBuffer>();
  const created = { buffers: 0, pipelines: 0 };
  const createBuffer = device.createBuffer.bind(device);
  const createPipeline = device.createComputePipelineAsync.bind(device);
  const recorded: RecordedDevice = {
    device,
    live,
    created,
    onPipeline: () => {},
    destroy: () => owner.destroy(),
  };
  device.createBuffer = (descriptor) => {
    const buffer = createBuffer(descriptor);
    created.buffers++;
    live.add(buffer);
    const destroy = buffer.destroy.bind(buffer);
    buffer.destroy = () => {
      live.delete(buffer);
      destroy();
    };
    return buffer;
  };
  device.createComputePipelineAsync = (descriptor) => {
    created.pipelines++;
    recorded.onPipeline(created.pipelines);
    return createPipeline(descriptor);
  };
  return recorded;
}

async function disposedRejection(engine: Engine): Promise<void> {
  const outcome = await engine.ready.then(() => "resolved", (error: unknown) => error);
  assert.ok(outcome instanceof EngineDisposedError, `ready rejects with EngineDisposedError, got ${String(outcome)}`);
}

Deno.test("load-abort: dispose after the first tensor: ready rejects, no tensor after it, every buffer destroyed", async () => {
  const recorded = await recordedDevice();
  try {
    let engine!: Engine;
    let mostLoaded = 0;
    let total = 0;
    engine = createEngine(MODEL, {
      device: recorded.device,
      onProgress: (p) => {
        if (p.phase !== "weights") return;
        mostLoaded = Math.max(mostLoaded, p.tensorsLoaded);
        total = p.tensorsTotal;
        if (p.tensorsLoaded === 1) void engine.dispose();
      },
    });
    await disposedRejection(engine);
    await engine.dispose();
    assert.equal(mostLoaded, 1, `the load stopped after the tensor in flight (of ${total})`);
    assert.ok(recorded.created.buffers > 0, "the load had made buffers");
    assert.equal(recorded.live.size, 0, "every buffer the load made was destroyed");
    assert.deepEqual(engine.memory(), { liveBuffers: 0, liveBytes: 0 });
  } finally {
    await recorded.destroy();
  }
});

Deno.test("load-abort: dispose during pipeline compilation stops compiling: fewer pipelines than a full load", async () => {
  // A full load first, on a device of its own: how many pipelines a load compiles. (A
  // device keeps what it compiled for later loads, so the aborted load gets a fresh one.)
  const first = await recordedDevice();
  let fullPipelines: number;
  try {
    const full = createEngine(MODEL, { device: first.device });
    await full.ready;
    await full.dispose();
    fullPipelines = first.created.pipelines;
  } finally {
    await first.destroy();
  }
  assert.ok(fullPipelines >= 4, `a load compiles several pipelines (${fullPipelines})`);

  const recorded = await recordedDevice();
  try {
    // A load disposed when its pipeline compilation is half done.
    const disposeAt = Math.ceil(fullPipelines / 2);
    let engine!: Engine;
    recorded.onPipeline = (index) => {
      if (index === disposeAt) void engine.dispose();
    };
    engine = createEngine(MODEL, { device: recorded.device });
    await disposedRejection(engine);
    await engine.dispose();
    assert.ok(
      recorded.created.pipelines < fullPipelines,
      `compiled ${recorded.created.pipelines} of ${fullPipelines} pipelines after disposing at the ${disposeAt}th`,
    );
    assert.equal(recorded.live.size, 0, "every buffer the load made was destroyed");
    assert.deepEqual(engine.memory(), { liveBuffers: 0, liveBytes: 0 });
  } finally {
    recorded.onPipeline = () => {};
    await recorded.destroy();
  }
});

Deno.test("load-abort: a large file read stops at the next chunk once aborted", async () => {
  const path = await Deno.makeTempFile({ suffix: ".bin" });
  try {
    await Deno.writeFile(path, new Uint8Array(48 * 1024 * 1024));
    const source = await openSource(path);
    try {
      const controller = new AbortController();
      const reading = source.read(0, source.size, controller.signal);
      controller.abort(); // the first chunk's read is under way
      const outcome = await reading.then(() => "resolved", (error: unknown) => error);
      assert.ok(outcome instanceof Error && outcome.name === "AbortError", `rejects with the abort, got ${String(outcome)}`);
    } finally {
      await source.close();
    }
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("load-abort: a weight split in parts stops at the next part once aborted, its parts destroyed", async () => {
  const ctx = await createGpuContext({ gpu: navigator.gpu });
  try {
    const [cols, rows] = [64, 32];
    const bytes = new Uint8Array(new Float32Array(cols * rows).fill(1).buffer);
    const controller = new AbortController();
    // 8 rows per part: 4 parts, each a separate buffer made after an await.
    const uploading = uploadWeight(ctx, { type: GGMLType.F32, shape: [cols, rows], bytes }, "w", {
      maxPartBytes: 8 * cols * 4,
      signal: controller.signal,
    });
    controller.abort(); // the first part is under way
    const outcome = await uploading.then(() => "resolved", (error: unknown) => error);
    assert.ok(outcome instanceof Error && outcome.name === "AbortError", `rejects with the abort, got ${String(outcome)}`);
    assert.equal(ctx.allocator.liveBuffers, 0, "the parts made before the abort were destroyed");
  } finally {
    await ctx.destroy();
  }
});
