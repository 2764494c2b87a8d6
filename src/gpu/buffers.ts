/**
 * Every GPU buffer we make goes through a {@link GpuAllocator}: it labels it, counts it,
 * and destroys it. `buffer.destroy()` is what gives GPU memory back at once (dropping the
 * JavaScript object waits for the garbage collector), so a clean shutdown calls
 * `destroyAll()`.
 *
 * ```ts
 * const a = ctx.allocator;
 * const x = a.createBuffer({ label: "x", size: 4096, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
 * a.writeBuffer(x, 0, new Float32Array(1024));
 * const w = await a.createBufferWithData("blk.0.attn_q.weight", bytes, GPUBufferUsage.STORAGE); // checked
 * const back = new Float32Array(await a.readBuffer(x, 0, 4096));
 * a.destroy(x); a.destroyAll();
 * a.liveBuffers; a.liveBytes; a.peakBytes;
 * ```
 *
 * `createBuffer` is synchronous: a failure surfaces as an uncaptured error (see
 * `GpuContext.failure`). `createBufferChecked` / `createBufferWithData` wrap creation in
 * `out-of-memory` and `validation` error scopes and throw a GpuError instead; use them for
 * large allocations (weights, KV cache), where running out of memory is expected.
 */
import { GpuError } from "../errors.ts";

/** A buffer descriptor whose label is required: every buffer we make is named. */
export interface LabeledBufferDescriptor extends GPUBufferDescriptor {
  label: string;
}

/** Options of {@link GpuAllocator}. */
export interface GpuAllocatorOptions {
  /** Largest storage binding (for error messages and planning); defaults to the device's. */
  maxStorageBindingSize?: number;
}

/** Creates, tracks and destroys GPU buffers; uploads and reads back. */
export class GpuAllocator {
  readonly device: GPUDevice;
  readonly maxStorageBindingSize: number;
  private readonly live = new Map<GPUBuffer, number>();
  private bytes = 0;
  private peak = 0;

  constructor(device: GPUDevice, options: GpuAllocatorOptions = {}) {
    this.device = device;
    this.maxStorageBindingSize = options.maxStorageBindingSize ?? device.limits.maxStorageBufferBindingSize;
  }

  /** Buffers created and not yet destroyed. */
  get liveBuffers(): number {
    return this.live.size;
  }
  /** Bytes held by live buffers. */
  get liveBytes(): number {
    return this.bytes;
  }
  /** The most bytes ever live at once. */
  get peakBytes(): number {
    return this.peak;
  }

  /** Creates a tracked buffer; failures are reported as uncaptured errors (not thrown). */
  createBuffer(desc: LabeledBufferDescriptor): GPUBuffer {
    const size = alignTo(desc.size, 4);
    const buffer = this.device.createBuffer({ ...desc, size });
    this.track(buffer, size);
    return buffer;
  }

  /** Creates a tracked buffer inside error scopes; throws GpuError OUT_OF_MEMORY / GPU_VALIDATION. */
  async createBufferChecked(desc: LabeledBufferDescriptor): Promise<GPUBuffer> {
    this.device.pushErrorScope("out-of-memory");
    this.device.pushErrorScope("validation");
    const buffer = this.createBuffer(desc);
    await this.popScopes(buffer, desc.label, desc.size);
    return buffer;
  }

  /**
   * Creates a buffer holding `data` (mapped at creation, so no staging copy), checked like
   * `createBufferChecked`. The buffer is padded to a multiple of 4 bytes with zeros.
   */
  createBufferWithData(label: string, data: ArrayBufferView, usage: GPUBufferUsageFlags): Promise<GPUBuffer> {
    const source = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    return this.createBufferFilled(label, data.byteLength, usage, (range) => range.set(source));
  }

  /**
   * Creates a buffer of `size` bytes mapped at creation, lets `fill` write its contents
   * (the range starts zeroed), and unmaps it; checked like `createBufferChecked`. Lets a
   * caller repack data straight into GPU-visible memory without an intermediate copy.
   */
  async createBufferFilled(
    label: string,
    size: number,
    usage: GPUBufferUsageFlags,
    fill: (range: Uint8Array) => void,
  ): Promise<GPUBuffer> {
    this.device.pushErrorScope("out-of-memory");
    this.device.pushErrorScope("validation");
    const buffer = this.createBuffer({ label, size: Math.max(4, size), usage, mappedAtCreation: true });
    let range: Uint8Array;
    try {
      range = new Uint8Array(buffer.getMappedRange());
    } catch (cause) {
      // An invalid buffer (allocation failed) may refuse to map; the scopes name the reason.
      await this.popScopes(buffer, label, size);
      this.destroy(buffer);
      throw new GpuError("OUT_OF_MEMORY", `could not map buffer "${label}" (${size} bytes)`, { label, needed: size }, { cause });
    }
    let fillError: unknown = undefined;
    try {
      fill(range);
    } catch (error) {
      fillError = error;
    }
    buffer.unmap();
    // Pop the scopes before rethrowing, so a failing `fill` leaves none pushed.
    await this.popScopes(buffer, label, size);
    if (fillError !== undefined) {
      this.destroy(buffer);
      throw fillError;
    }
    return buffer;
  }

  /** Destroys one buffer we created (no-op for one already destroyed). */
  destroy(buffer: GPUBuffer): void {
    const size = this.live.get(buffer);
    if (size === undefined) return;
    this.live.delete(buffer);
    this.bytes -= size;
    buffer.destroy();
  }

  /** Destroys every live buffer. */
  destroyAll(): void {
    for (const buffer of [...this.live.keys()]) this.destroy(buffer);
  }

  /** Queues an upload of `data` at `offset` (both padded to 4 bytes as WebGPU requires). */
  writeBuffer(buffer: GPUBuffer, offset: number, data: ArrayBufferView): void {
    const bytes = plainBytes(data);
    if (bytes.byteLength % 4 === 0) {
      this.device.queue.writeBuffer(buffer, offset, bytes);
      return;
    }
    const padded = new Uint8Array(alignTo(bytes.byteLength, 4));
    padded.set(bytes);
    this.device.queue.writeBuffer(buffer, offset, padded);
  }

  /**
   * Reads `size` bytes at `offset` of `buffer` (which needs COPY_SRC usage) through a
   * temporary MAP_READ buffer. Costs one GPU round trip (about 11 ms in Deno).
   */
  async readBuffer(buffer: GPUBuffer, offset: number, size: number): Promise<ArrayBuffer> {
    const start = offset - (offset % 4);
    const end = alignTo(offset + size, 4);
    const staging = this.createBuffer({
      label: `readback of ${buffer.label}`,
      size: end - start,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    try {
      const encoder = this.device.createCommandEncoder({ label: staging.label });
      encoder.copyBufferToBuffer(buffer, start, staging, 0, end - start);
      this.device.queue.submit([encoder.finish()]);
      await staging.mapAsync(GPUMapMode.READ);
      const skip = offset - start;
      return staging.getMappedRange().slice(skip, skip + size);
    } finally {
      this.destroy(staging);
    }
  }

  private track(buffer: GPUBuffer, size: number): void {
    this.live.set(buffer, size);
    this.bytes += size;
    this.peak = Math.max(this.peak, this.bytes);
  }

  private async popScopes(buffer: GPUBuffer, label: string, size: number): Promise<void> {
    const validation = await this.device.popErrorScope();
    const oom = await this.device.popErrorScope();
    if (!oom && !validation) return;
    this.destroy(buffer);
    if (oom) {
      throw new GpuError("OUT_OF_MEMORY", `out of GPU memory allocating "${label}" (${size} bytes): ${oom.message}`, {
        label,
        needed: size,
      });
    }
    throw new GpuError("GPU_VALIDATION", `creating buffer "${label}" (${size} bytes) failed: ${validation?.message}`, {
      label,
      needed: size,
    });
  }
}

/** The bytes of `data` over a plain ArrayBuffer (WebGPU refuses SharedArrayBuffer views): a view, or a copy. */
function plainBytes(data: ArrayBufferView): Uint8Array<ArrayBuffer> {
  if (data.buffer instanceof ArrayBuffer) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const copy = new Uint8Array(data.byteLength);
  copy.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  return copy;
}

/** Rounds `n` up to a multiple of `alignment`. */
export function alignTo(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}
