/**
 * A model's weights on the GPU: matrices kept in their GGUF type (repacked by
 * `uploadWeight`, split across bindings when large), vectors (norms, biases) as f32.
 *
 * Tensors are read and uploaded one at a time, so the host never holds more than one
 * tensor's bytes; progress is reported and the abort signal checked between tensors.
 * Every type is checked before the first byte is read: a file with a tensor the kernels
 * cannot run fails at once with UnsupportedTensorTypeError naming the tensor.
 */
import { GGUFError, UnsupportedTensorTypeError } from "../errors.ts";
import { ggmlTypeName } from "../gguf/ggml-type.ts";
import { DEQUANTIZE_TYPES, dequantize } from "../gguf/quant/index.ts";
import type { GGUFFile, GGUFTensorInfo } from "../gguf/reader.ts";
import type { GpuContext } from "../gpu/device.ts";
import { weightRows } from "../gpu/kernels/matmul.ts";
import { GPU_WEIGHT_LAYOUTS, type GpuWeight, uploadWeight } from "../gpu/weights.ts";
import type { LoadProgress } from "./runner.ts";
import { architecture, fusedParts, type LayerTensorKey, layerTensorName, layerTensors, modelTensors } from "./arch/index.ts";
import { GLOBAL_TENSOR_NAMES, LONG_ROPE_TENSOR_NAMES, type ModelConfig } from "./config.ts";

/**
 * Weights of one layer, by role: the matrices in their GGUF type, the vectors (norms,
 * biases) as f32, each present when the architecture's table lists it for the config.
 * Shapes as (rows, cols) = (out, in), as in reference.ts's ReferenceLayerWeights.
 */
export interface GpuLayerWeights {
  readonly matrices: Readonly<Partial<Record<LayerTensorKey, GpuWeight>>>;
  readonly vectors: Readonly<Partial<Record<LayerTensorKey, GPUBuffer>>>;
  /** Per-head Q/K norms: the Q norm's weights followed by the K norm's, f32 (the rope kernel reads both). */
  readonly qkNorm: GPUBuffer | null; // (2·headDim)
}

/** Matrix `key` of layer `l`; TENSOR_MISSING when the architecture's ops need one it lacks. */
export function layerMatrix(w: GpuLayerWeights, key: LayerTensorKey, l: number): GpuWeight {
  const m = w.matrices[key];
  if (!m) throw new GGUFError("TENSOR_MISSING", `tensor "${layerTensorName(l, key)}" was not loaded`, { field: layerTensorName(l, key) });
  return m;
}

/** Vector `key` of layer `l`; TENSOR_MISSING when the architecture's ops need one it lacks. */
export function layerVector(w: GpuLayerWeights, key: LayerTensorKey, l: number): GPUBuffer {
  const v = w.vectors[key];
  if (!v) throw new GGUFError("TENSOR_MISSING", `tensor "${layerTensorName(l, key)}" was not loaded`, { field: layerTensorName(l, key) });
  return v;
}

/** Every weight of a model on the GPU. */
export interface GpuModelWeights {
  readonly tokenEmbd: GpuWeight; // (vocab, nEmbd)
  readonly layers: readonly GpuLayerWeights[];
  readonly outputNorm: GPUBuffer; // (nEmbd) f32
  /** The same object as `tokenEmbd` when the embeddings are tied. */
  readonly output: GpuWeight; // (vocab, nEmbd)
  /** `rope_freqs.weight` (per-pair frequency divisors), kept on the host for the RoPE table. */
  readonly ropeFreqDivisors: Float32Array | null; // (ropeDims / 2)
  /** LongRoPE's divisors (phi3), kept on the host: which one a sequence uses depends on the context. */
  readonly longRope?: { readonly long: Float32Array; readonly short: Float32Array }; // each (ropeDims / 2)
  /** Bytes of all weight buffers. */
  readonly byteLength: number;
}

/** Options of {@link loadGpuWeights}. */
export interface LoadGpuWeightsOptions {
  readonly onProgress?: (progress: LoadProgress) => void;
  readonly signal?: AbortSignal;
}

/** How a tensor goes to the GPU. */
type TensorRole = "matrix" | "vector" | "host";

/** The tensors the forward pass reads (the architecture's table), each with its role. */
function tensorPlan(c: ModelConfig): Map<string, TensorRole> {
  const role = (kind: string): TensorRole => (kind === "matrix" ? "matrix" : kind === "host" ? "host" : "vector");
  return new Map(modelTensors(architecture(c.arch), c).map((t) => [t.name, role(t.kind)]));
}

/**
 * Reads and uploads every weight of `config` from `file`. On any failure (a read error, an
 * abort, out of memory) the buffers made so far are destroyed before the error propagates.
 */
export async function loadGpuWeights(
  ctx: GpuContext,
  file: GGUFFile,
  config: ModelConfig,
  options: LoadGpuWeightsOptions = {},
): Promise<GpuModelWeights> {
  const plan = tensorPlan(config);
  const infos = new Map<string, GGUFTensorInfo>();
  for (const [name, role] of plan) {
    const info = file.tensor(name);
    if (!info) throw new GGUFError("TENSOR_MISSING", `tensor "${name}" is missing`, { file: file.name, field: name });
    const runnable = role === "matrix" ? GPU_WEIGHT_LAYOUTS.has(info.type) : DEQUANTIZE_TYPES.has(info.type);
    if (!runnable) throw new UnsupportedTensorTypeError(name, ggmlTypeName(info.type), file.name);
    infos.set(name, info);
  }

  const bytesTotal = [...infos.values()].reduce((sum, t) => sum + t.byteLength, 0);
  const tensorsTotal = infos.size;
  let bytesLoaded = 0;
  let tensorsLoaded = 0;
  const report = () => options.onProgress?.({ phase: "weights", bytesLoaded, bytesTotal, tensorsLoaded, tensorsTotal });

  const matrices = new Map<string, GpuWeight>();
  const vectors = new Map<string, Float32Array>();
  const made: GPUBuffer[] = [];
  try {
    report();
    // File order: sequential reads of a local file or a URL.
    const ordered = [...infos.values()].sort((a, b) => a.shard - b.shard || a.offset - b.offset);
    for (const info of ordered) {
      options.signal?.throwIfAborted();
      const bytes = await file.readTensor(info, options.signal);
      if (plan.get(info.name) === "matrix") {
        const weight = await uploadWeight(ctx, { type: info.type, shape: info.shape, bytes }, info.name, { signal: options.signal });
        matrices.set(info.name, weight);
        made.push(...weight.parts.map((p) => p.buffer));
      } else {
        vectors.set(info.name, dequantize(info.type, bytes, info.nElements, { tensor: info.name }));
      }
      bytesLoaded += info.byteLength;
      tensorsLoaded++;
      report();
    }
    options.signal?.throwIfAborted();
    return await assemble(ctx, config, matrices, vectors, made);
  } catch (error) {
    for (const buffer of made) ctx.allocator.destroy(buffer);
    throw error;
  }
}

/** Builds the weight structure; vectors become f32 buffers (recorded in `made`). */
async function assemble(
  ctx: GpuContext,
  c: ModelConfig,
  matrices: ReadonlyMap<string, GpuWeight>,
  vectors: ReadonlyMap<string, Float32Array>,
  made: GPUBuffer[],
): Promise<GpuModelWeights> {
  const matrix = (name: string): GpuWeight => {
    const w = matrices.get(name);
    if (!w) throw new GGUFError("TENSOR_MISSING", `tensor "${name}" was not loaded`, { field: name });
    return w;
  };
  const values = (name: string): Float32Array => {
    const v = vectors.get(name);
    if (!v) throw new GGUFError("TENSOR_MISSING", `tensor "${name}" was not loaded`, { field: name });
    return v;
  };
  const upload = async (label: string, data: Float32Array): Promise<GPUBuffer> => {
    const buffer = await ctx.allocator.createBufferWithData(label, data, GPUBufferUsage.STORAGE);
    made.push(buffer);
    return buffer;
  };
  const arch = architecture(c.arch);
  const layers: GpuLayerWeights[] = [];
  for (let l = 0; l < c.nLayers; l++) {
    const matrices: Partial<Record<LayerTensorKey, GpuWeight>> = {};
    const vectorBuffers: Partial<Record<LayerTensorKey, GPUBuffer>> = {};
    for (const t of layerTensors(arch, c, l)) {
      const key = t.layer!.def.key;
      if (t.kind === "matrix") matrices[key] = matrix(t.name);
      // Per-head Q/K norms go up packed, below, as the rope kernel reads them.
      else if (!(c.qkNorm && (key === "qNorm" || key === "kNorm"))) vectorBuffers[key] = await upload(t.name, values(t.name));
    }
    // A fused matrix (phi3's attn_qkv, ffn_up) is read through row ranges of its buffers:
    // the ops see only its parts, so it leaves the map once they are made.
    const fused = fusedParts(arch, c);
    for (const part of fused) {
      matrices[part.key] = weightRows(matrices[part.from]!, part.firstRow, part.rows, `${layerTensorName(l, part.from)} as ${part.key}`);
    }
    for (const part of fused) delete matrices[part.from];
    let qkNorm: GPUBuffer | null = null;
    if (c.qkNorm) {
      const both = new Float32Array(2 * c.headDim);
      both.set(values(layerTensorName(l, "qNorm")), 0);
      both.set(values(layerTensorName(l, "kNorm")), c.headDim);
      qkNorm = await upload(`blk.${l}.attn_qk_norm (q then k)`, both);
    }
    layers.push({ matrices, vectors: vectorBuffers, qkNorm });
  }
  const tokenEmbd = matrix(GLOBAL_TENSOR_NAMES.embedding);
  return {
    tokenEmbd,
    layers,
    outputNorm: await upload(GLOBAL_TENSOR_NAMES.outputNorm, values(GLOBAL_TENSOR_NAMES.outputNorm)),
    output: c.tiedEmbeddings ? tokenEmbd : matrix(GLOBAL_TENSOR_NAMES.output),
    ropeFreqDivisors: c.ropeFreqFactors !== undefined ? values(c.ropeFreqFactors) : null,
    ...(c.longRope ? { longRope: { long: values(LONG_ROPE_TENSOR_NAMES.long), short: values(LONG_ROPE_TENSOR_NAMES.short) } } : {}),
    byteLength: made.reduce((sum, b) => sum + b.size, 0),
  };
}
