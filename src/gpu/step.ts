/**
 * Recording many dispatches into one compute pass, with their small uniform parameters
 * packed into a reusable arena.
 *
 * Each dispatch in its own compute pass costs about 50 µs on an H100 (Deno); in one pass,
 * about 2–4 µs. So a whole model step is recorded into one {@link GpuStep}:
 *
 * ```ts
 * const arena = new ParamArena(ctx.allocator, ctx.limits.minUniformBufferOffsetAlignment);
 * const step = new GpuStep(ctx, arena, "decode 17");
 * const params = step.params(new Uint32Array([rows, cols]));   // slot in the arena
 * step.dispatch(pipeline, [{ binding: 0, resource: { buffer: w } }, ..., { binding: 3, resource: params }], [groups]);
 * step.copyBuffer(src, 0, dst, 0, 64);                         // ends the pass, copies, reopens lazily
 * step.submit();                                               // uploads the params once, submits once
 * ...
 * arena.destroy();
 * ```
 *
 * Why an arena: a uniform buffer per dispatch per step would mean hundreds of allocations
 * per token. The arena keeps CPU-side copies of its chunks, hands out aligned slots, and
 * uploads the used bytes with one `writeBuffer` per chunk at `submit()`. Reusing the same
 * slots for the next step is safe because queue operations run in order: the next step's
 * `writeBuffer` runs after this step's submitted work. One arena serves one recording at a
 * time (a step owns it from construction to `submit()`).
 */
import { GpuError, InvalidArgumentError } from "../errors.ts";
import { alignTo, type GpuAllocator } from "./buffers.ts";
import type { GpuContext } from "./device.ts";
import type { GpuProfiler } from "./profiler.ts";

/** Bytes in one arena chunk (a uniform buffer). 64 KiB is WebGPU's default max uniform binding. */
const CHUNK_BYTES = 64 * 1024;

interface ArenaChunk {
  readonly buffer: GPUBuffer;
  readonly mirror: Uint8Array<ArrayBuffer>;
  used: number;
}

/** Aligned slots of uniform memory, uploaded once per step. */
export class ParamArena {
  private readonly allocator: GpuAllocator;
  private readonly alignment: number;
  private readonly chunks: ArenaChunk[] = [];
  private current = 0;

  /** `alignment` is the device's `minUniformBufferOffsetAlignment` (256 on most GPUs). */
  constructor(allocator: GpuAllocator, alignment = 256) {
    this.allocator = allocator;
    this.alignment = alignment;
  }

  /** Copies `data` into a free slot and returns the binding that will hold it after `flush()`. */
  alloc(data: ArrayBufferView): GPUBufferBinding {
    const size = alignTo(Math.max(data.byteLength, 16), 16);
    if (size > CHUNK_BYTES) throw new InvalidArgumentError("params", `uniform params of ${data.byteLength} bytes exceed ${CHUNK_BYTES}`);
    let chunk = this.chunks[this.current];
    if (chunk && alignTo(chunk.used, this.alignment) + size > CHUNK_BYTES) {
      this.current++;
      chunk = this.chunks[this.current];
    }
    if (!chunk) {
      chunk = {
        buffer: this.allocator.createBuffer({
          label: `params arena ${this.chunks.length}`,
          size: CHUNK_BYTES,
          usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
        }),
        mirror: new Uint8Array(CHUNK_BYTES),
        used: 0,
      };
      this.chunks.push(chunk);
    }
    const offset = alignTo(chunk.used, this.alignment);
    chunk.mirror.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), offset);
    chunk.mirror.fill(0, offset + data.byteLength, offset + size);
    chunk.used = offset + size;
    return { buffer: chunk.buffer, offset, size };
  }

  /** Uploads every slot handed out since the last reset. */
  flush(): void {
    for (const chunk of this.chunks) {
      if (chunk.used > 0) this.allocator.device.queue.writeBuffer(chunk.buffer, 0, chunk.mirror, 0, alignTo(chunk.used, 4));
    }
  }

  /** Makes every slot free again (after the work that read them was submitted). */
  reset(): void {
    for (const chunk of this.chunks) chunk.used = 0;
    this.current = 0;
  }

  /** Destroys the arena's buffers. */
  destroy(): void {
    for (const chunk of this.chunks) this.allocator.destroy(chunk.buffer);
    this.chunks.length = 0;
    this.current = 0;
  }
}

/** Workgroup counts of one dispatch. */
export type WorkgroupCount = readonly [number, number?, number?];

/**
 * One command encoder and (lazily) one open compute pass, submitted once. With a
 * {@link GpuProfiler}, every dispatch gets a pass of its own with timestamps instead.
 */
export class GpuStep {
  readonly ctx: GpuContext;
  readonly arena: ParamArena;
  readonly encoder: GPUCommandEncoder;
  readonly label: string;
  readonly profiler: GpuProfiler | undefined;
  private pass: GPUComputePassEncoder | null = null;
  private dispatches = 0;
  private submitted = false;

  constructor(ctx: GpuContext, arena: ParamArena, label = "step", profiler?: GpuProfiler) {
    this.ctx = ctx;
    this.arena = arena;
    this.label = label;
    this.profiler = profiler;
    this.encoder = ctx.device.createCommandEncoder({ label });
  }

  /** Dispatches recorded so far. */
  get dispatchCount(): number {
    return this.dispatches;
  }

  /** A uniform slot holding `data` (see {@link ParamArena}). */
  params(data: ArrayBufferView): GPUBufferBinding {
    return this.arena.alloc(data);
  }

  /**
   * Records one dispatch. `bindings` is either a ready bind group for group 0 or its entries
   * (a bind group is then made from the pipeline's layout).
   */
  dispatch(pipeline: GPUComputePipeline, bindings: GPUBindGroup | GPUBindGroupEntry[], workgroups: WorkgroupCount): void {
    this.assertOpen();
    const [x, y = 1, z = 1] = workgroups;
    if (x === 0 || y === 0 || z === 0) return;
    const max = this.ctx.limits.maxComputeWorkgroupsPerDimension;
    if (x > max || y > max || z > max) {
      throw new GpuError("LIMIT_TOO_LOW", `${pipeline.label}: dispatch ${x}×${y}×${z} exceeds ${max} work-groups per dimension`, {
        label: pipeline.label,
      });
    }
    const group = Array.isArray(bindings)
      ? this.ctx.device.createBindGroup({ label: pipeline.label, layout: pipeline.getBindGroupLayout(0), entries: bindings })
      : bindings;
    if (this.profiler) this.closePass();
    const pass = this.openPass(pipeline.label);
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, group);
    pass.dispatchWorkgroups(x, y, z);
    this.dispatches++;
    if (this.profiler) this.closePass();
  }

  /**
   * The open compute pass (opened if needed), for code that records into a pass itself
   * (the DeviceSampler hook). It sets its own pipeline and bind groups; so does `dispatch`.
   */
  computePass(label = "sample"): GPUComputePassEncoder {
    this.assertOpen();
    if (this.profiler) this.closePass();
    return this.openPass(label);
  }

  /** Records a buffer copy (closes the compute pass; the next dispatch opens a new one). */
  copyBuffer(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, size: number): void {
    this.assertOpen();
    this.closePass();
    this.encoder.copyBufferToBuffer(src, srcOffset, dst, dstOffset, size);
  }

  /** Ends the pass, uploads the params, submits, and frees the arena for the next step. */
  submit(): void {
    this.assertOpen();
    this.closePass();
    this.profiler?.resolveInto(this.encoder);
    this.arena.flush();
    this.ctx.submit([this.encoder.finish()]);
    this.arena.reset();
    this.submitted = true;
  }

  private openPass(kernel: string): GPUComputePassEncoder {
    if (this.pass) return this.pass;
    const timestampWrites = this.profiler?.nextPass(kernel);
    this.pass = this.encoder.beginComputePass(timestampWrites ? { label: kernel, timestampWrites } : { label: this.label });
    return this.pass;
  }

  private closePass(): void {
    if (this.pass) this.pass.end();
    this.pass = null;
  }

  private assertOpen(): void {
    if (this.submitted) throw new InvalidArgumentError("step", `"${this.label}" was already submitted`);
  }
}

/** Splits a 1-D count of work-groups into x×y within the per-dimension limit. */
export function splitWorkgroups(count: number, maxPerDimension: number): [number, number] {
  if (count <= maxPerDimension) return [count, 1];
  const y = Math.ceil(count / maxPerDimension);
  return [Math.ceil(count / y), y];
}
