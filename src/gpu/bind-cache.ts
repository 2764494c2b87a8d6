/**
 * Bind groups made once and found again by what they bind, with their small uniform
 * parameters in a persistent pool.
 *
 * A decode step records the same products with the same buffers and parameters every
 * time; making each one's bind group again (and uploading its parameters through the
 * step's {@link ParamArena}) is host work paid per dispatch per token. Here the first
 * recording makes the bind group and writes its parameters once; later ones are a map
 * lookup.
 *
 * ```ts
 * const cache = new BindGroupCache(ctx);
 * const group = cache.get(pipeline, entries, params);   // null once the cache is full
 * step.dispatch(pipeline, group ?? [...entries, { binding: 3, resource: step.params(params) }], groups);
 * cache.destroy();
 * ```
 */
import { alignTo } from "./buffers.ts";
import type { GpuContext } from "./device.ts";

/** Bytes of one pool buffer (WebGPU's default maximum uniform binding). */
const POOL_CHUNK_BYTES = 64 * 1024;
/** Default most cached bind groups: enough for every decode product of a large model at several batch sizes. */
const DEFAULT_MAX_ENTRIES = 8192;

/** Cached bind groups keyed by pipeline, bound buffer ranges and uniform contents. */
export class BindGroupCache {
  readonly #ctx: GpuContext;
  readonly #maxEntries: number;
  readonly #groups = new Map<string, GPUBindGroup>();
  readonly #bufferIds = new WeakMap<GPUBuffer, number>();
  readonly #pool: GPUBuffer[] = [];
  #poolUsed = POOL_CHUNK_BYTES;
  #nextId = 0;

  constructor(ctx: GpuContext, maxEntries = DEFAULT_MAX_ENTRIES) {
    this.#ctx = ctx;
    this.#maxEntries = maxEntries;
  }

  /** Cached bind groups. */
  get size(): number {
    return this.#groups.size;
  }

  /**
   * The bind group of `pipeline` (group 0) with `entries` plus `params` as a uniform at
   * `paramsBinding`, made on first use; null when the cache is full (record with the
   * step's arena then).
   */
  get(pipeline: GPUComputePipeline, entries: readonly GPUBindGroupEntry[], params: Uint32Array, paramsBinding = 3): GPUBindGroup | null {
    const key = this.#key(pipeline, entries, params);
    if (key === null) return null;
    const cached = this.#groups.get(key);
    if (cached) return cached;
    if (this.#groups.size >= this.#maxEntries) return null;
    const group = this.#ctx.device.createBindGroup({
      label: pipeline.label,
      layout: pipeline.getBindGroupLayout(0),
      entries: [...entries, { binding: paramsBinding, resource: this.#upload(params) }],
    });
    this.#groups.set(key, group);
    return group;
  }

  /** Forgets every bind group and destroys the parameter pool. */
  destroy(): void {
    this.#groups.clear();
    for (const buffer of this.#pool) this.#ctx.allocator.destroy(buffer);
    this.#pool.length = 0;
    this.#poolUsed = POOL_CHUNK_BYTES;
  }

  /** The cache key, or null for entries that are not buffer ranges (not cached). */
  #key(pipeline: GPUComputePipeline, entries: readonly GPUBindGroupEntry[], params: Uint32Array): string | null {
    let key = `${pipeline.label}|${params.join(",")}`;
    for (const e of entries) {
      const r = e.resource;
      if (typeof r !== "object" || r === null || !("buffer" in r)) return null;
      key += `|${e.binding}:${this.#idOf(r.buffer)}:${r.offset ?? 0}:${r.size ?? -1}`;
    }
    return key;
  }

  #idOf(buffer: GPUBuffer): number {
    let id = this.#bufferIds.get(buffer);
    if (id === undefined) {
      id = this.#nextId++;
      this.#bufferIds.set(buffer, id);
    }
    return id;
  }

  /** A slot of the pool holding `params`, written now (queue order puts it before any use). */
  #upload(params: Uint32Array): GPUBufferBinding {
    const align = this.#ctx.limits.minUniformBufferOffsetAlignment;
    const size = alignTo(Math.max(params.byteLength, 16), 16);
    let offset = alignTo(this.#poolUsed, align);
    if (offset + size > POOL_CHUNK_BYTES) {
      this.#pool.push(
        this.#ctx.allocator.createBuffer({
          label: `bind-cache params ${this.#pool.length}`,
          size: POOL_CHUNK_BYTES,
          usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
        }),
      );
      offset = 0;
    }
    const buffer = this.#pool.at(-1)!;
    const padded = new Uint32Array(size / 4);
    padded.set(params);
    this.#ctx.allocator.writeBuffer(buffer, offset, padded);
    this.#poolUsed = offset + size;
    return { buffer, offset, size };
  }
}
