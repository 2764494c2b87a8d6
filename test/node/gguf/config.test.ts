/**
 * modelConfigFromGGUF: tiny llama / qwen2 / qwen3 files that llama.cpp itself loads (its
 * loader checks every tensor shape against its own hyperparameters), their configs
 * compared with the values the fixtures were built from, and the ModelConfigErrors of
 * inconsistent files.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ModelConfigError } from "../../../src/errors.ts";
import { GGMLType } from "../../../src/gguf/ggml-type.ts";
import { getArray, getBoolean, getInteger, getNumber, getNumberArray, getString, getStringArray } from "../../../src/gguf/metadata.ts";
import { openGGUF } from "../../../src/gguf/reader.ts";
import { encodeGGUF, type GGUFSpec, type MetaEntry, meta, writeGGUFFile } from "../../../src/gguf/writer.ts";
import { type Architecture, modelConfigFromGGUF } from "../../../src/model/config.ts";
import { syntheticMetadata, syntheticModelConfig, syntheticTensorSpecs } from "../../../src/model/synthetic.ts";
import { loadLlamaCppModel } from "../support/llamacpp.ts";
import { numericTensor, prng, type TinyModelOptions, tinyModelSpec } from "./fixtures.ts";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "gguf-config-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function configOf(spec: GGUFSpec) {
  const file = await openGGUF(encodeGGUF(spec));
  return modelConfigFromGGUF(file);
}

async function configError(spec: GGUFSpec): Promise<ModelConfigError> {
  try {
    await configOf(spec);
  } catch (err) {
    if (err instanceof ModelConfigError) return err;
    throw err;
  }
  throw new Error("no error");
}

/** `spec` with metadata `key` replaced (or removed when `entry` is undefined, added when new). */
function withMeta(spec: GGUFSpec, key: string, entry: MetaEntry | undefined): GGUFSpec {
  const list = Array.isArray(spec.metadata) ? [...spec.metadata] : Object.entries(spec.metadata);
  const kept = list.filter(([k]) => k !== key);
  return { ...spec, metadata: entry === undefined ? kept : [...kept, [key, entry]] };
}

function withoutTensor(spec: GGUFSpec, name: string): GGUFSpec {
  return { ...spec, tensors: spec.tensors.filter((t) => t.name !== name) };
}

describe("configs of models llama.cpp loads", () => {
  const cases: Array<[Architecture, TinyModelOptions]> = [
    ["llama", { nLayers: 2, tied: false }],
    ["llama", { nLayers: 1, tied: true, nKvHeads: 4, matrixType: GGMLType.F16 }],
    ["qwen2", { nLayers: 2, tied: true }],
    ["qwen3", { nLayers: 2, tied: false, nKvHeads: 1 }],
  ];
  for (const [arch, options] of cases) {
    it(`${arch} ${JSON.stringify(options)}`, async () => {
      const spec = tinyModelSpec({ ...options, arch });
      const [path] = await writeGGUFFile(join(dir, `${arch}-${options.nLayers}.gguf`), spec);
      const model = await loadLlamaCppModel(path ?? "");
      try {
        expect(model.embeddingVectorSize).toBe(64);
        expect(model.trainContextSize).toBe(128);
      } finally {
        await model.dispose();
      }
      const file = await openGGUF(path ?? "");
      const config = modelConfigFromGGUF(file);
      await file.close();
      // Expected values: the fixture's defaults (n_embd 64, 4 heads, n_ff 96, 258 tokens).
      expect(config).toEqual({
        arch,
        name: `tiny-${arch}`,
        nLayers: options.nLayers,
        nEmbd: 64,
        nHeads: 4,
        nKvHeads: options.nKvHeads ?? 2,
        headDim: 16,
        nFf: 96,
        vocabSize: 258,
        contextLength: 128,
        normEps: Math.fround(1e-5),
        rope: { layout: arch === "llama" ? "normal" : "neox", base: 10000, dims: 16, scaling: { type: "none" } },
        qkvBias: arch === "qwen2",
        qkNorm: arch === "qwen3",
        tiedEmbeddings: options.tied,
      });
    });
  }
});

describe("config details", () => {
  it("linear rope scaling, explicit rope dims and key_length, file name as a fallback name", async () => {
    let spec = tinyModelSpec();
    spec = withMeta(spec, "llama.rope.scaling.type", meta.str("linear"));
    spec = withMeta(spec, "llama.rope.scaling.factor", meta.f32(4));
    spec = withMeta(spec, "llama.rope.dimension_count", meta.u32(8));
    spec = withMeta(spec, "llama.attention.key_length", meta.u32(16));
    spec = withMeta(spec, "general.name", undefined);
    const c = await configOf(spec);
    expect(c.rope).toEqual({ layout: "normal", base: 10000, dims: 8, scaling: { type: "linear", factor: 4 } });
    expect(c.name).toBe("memory");
  });

  it("the legacy rope.scale_linear key", async () => {
    const c = await configOf(withMeta(tinyModelSpec(), "llama.rope.scale_linear", meta.f32(2)));
    expect(c.rope.scaling).toEqual({ type: "linear", factor: 2 });
  });

  it("a rope_freqs.weight tensor is named, and its length checked", async () => {
    const base = tinyModelSpec();
    const good = { ...base, tensors: [...base.tensors, numericTensor(prng(1), "rope_freqs.weight", GGMLType.F32, [8], 1)] };
    expect((await configOf(good)).ropeFreqFactors).toBe("rope_freqs.weight");
    expect((await configOf(base)).ropeFreqFactors).toBeUndefined();
    const bad = { ...base, tensors: [...base.tensors, numericTensor(prng(1), "rope_freqs.weight", GGMLType.F32, [16], 1)] };
    expect((await configError(bad)).key).toBe("rope_freqs.weight");
  });

  it("head_count_kv defaults to head_count", async () => {
    const c = await configOf(withMeta(tinyModelSpec({ nKvHeads: 4 }), "llama.attention.head_count_kv", undefined));
    expect(c.nKvHeads).toBe(4);
  });

  it("a llama file with Q/K/V biases sets qkvBias", async () => {
    const spec = renameArch(tinyModelSpec({ arch: "qwen2", nLayers: 1 }), "qwen2", "llama");
    const c = await configOf(spec);
    expect([c.arch, c.qkvBias, c.rope.layout]).toEqual(["llama", true, "normal"]);
  });
});

/** The same model relabelled: `from.*` keys become `to.*`. */
function renameArch(spec: GGUFSpec, from: string, to: string): GGUFSpec {
  const list = Array.isArray(spec.metadata) ? spec.metadata : Object.entries(spec.metadata);
  return {
    ...spec,
    metadata: list.map(([k, v]): [string, MetaEntry] =>
      k === "general.architecture" ? [k, meta.str(to)] : [k.startsWith(`${from}.`) ? `${to}.${k.slice(from.length + 1)}` : k, v],
    ),
  };
}

describe("inconsistent files throw ModelConfigError naming the key", () => {
  const base = tinyModelSpec();
  const cases: Array<[string, GGUFSpec, string, string]> = [
    ["unsupported architecture", withMeta(base, "general.architecture", meta.str("gpt2")), "general.architecture", "gpt2"],
    ["missing block_count", withMeta(base, "llama.block_count", undefined), "llama.block_count", "missing"],
    ["block_count as a string", withMeta(base, "llama.block_count", meta.str("2")), "llama.block_count", "string"],
    ["kv heads not dividing heads", withMeta(base, "llama.attention.head_count_kv", meta.u32(3)), "llama.attention.head_count_kv", "3"],
    ["kv heads disagreeing with attn_k", withMeta(base, "llama.attention.head_count_kv", meta.u32(1)), "blk.0.attn_k.weight", "[64, 32]"],
    ["yarn rope scaling", withMeta(base, "llama.rope.scaling.type", meta.str("yarn")), "llama.rope.scaling.type", "yarn"],
    ["odd rope dims", withMeta(base, "llama.rope.dimension_count", meta.u32(7)), "llama.rope.dimension_count", "even"],
    ["zero epsilon", withMeta(base, "llama.attention.layer_norm_rms_epsilon", meta.f32(0)), "llama.attention.layer_norm_rms_epsilon", "positive"],
    ["token list longer than the embedding", withMeta(base, "tokenizer.ggml.tokens", meta.strs(Array.from({ length: 300 }, (_, i) => `t${i}`))), "tokenizer.ggml.tokens", "300"],
    ["missing layer tensor", withoutTensor(base, "blk.1.ffn_up.weight"), "blk.1.ffn_up.weight", "missing"],
    ["missing embedding", withoutTensor(base, "token_embd.weight"), "token_embd.weight", "missing"],
    ["value_length unlike key_length", withMeta(base, "llama.attention.value_length", meta.u32(8)), "llama.attention.value_length", "8"],
    ["qwen2 without biases", withoutTensor(tinyModelSpec({ arch: "qwen2" }), "blk.0.attn_q.bias"), "blk.0.attn_q.bias", "missing"],
    ["qwen3 without q/k norms", withoutTensor(tinyModelSpec({ arch: "qwen3" }), "blk.1.attn_k_norm.weight"), "blk.1.attn_k_norm.weight", "missing"],
    ["llama labelled qwen3", renameArch(base, "llama", "qwen3"), "blk.0.attn_q_norm.weight", "missing"],
  ];
  for (const [what, spec, key, text] of cases) {
    it(what, async () => {
      const err = await configError(spec);
      expect(err.key).toBe(key);
      expect(err.code).toBe("MODEL_CONFIG");
      expect(err.message).toContain(text);
    });
  }
});

describe("typed metadata getters", () => {
  const m = { s: "x", n: 3, b: true, big: 2n ** 40n, huge: 2n ** 60n, arr: ["a", "b"], nums: [1, 2n], f: 1.5 };
  it("return values of the right type and fallbacks for absent keys", () => {
    expect(getString(m, "s")).toBe("x");
    expect(getString(m, "absent", "fb")).toBe("fb");
    expect(getNumber(m, "big")).toBe(2 ** 40);
    expect(getInteger(m, "n")).toBe(3);
    expect(getBoolean(m, "b")).toBe(true);
    expect(getArray(m, "arr")).toEqual(["a", "b"]);
    expect(getStringArray(m, "arr")).toEqual(["a", "b"]);
    expect(getNumberArray(m, "nums")).toEqual([1, 2]);
  });
  it("throw ModelConfigError naming the key otherwise", () => {
    const bad: Array<[() => unknown, string]> = [
      [() => getString(m, "n"), "n"],
      [() => getString(m, "absent"), "absent"],
      [() => getNumber(m, "s"), "s"],
      [() => getNumber(m, "huge"), "huge"],
      [() => getInteger(m, "f"), "f"],
      [() => getBoolean(m, "n"), "n"],
      [() => getArray(m, "s"), "s"],
      [() => getStringArray(m, "nums"), "nums"],
      [() => getNumber(m, "constructor"), "constructor"],
    ];
    for (const [call, key] of bad) {
      expect(call).toThrow(ModelConfigError);
      try {
        call();
      } catch (err) {
        expect(err instanceof ModelConfigError && err.key).toBe(key);
      }
    }
  });
});

describe("phi3 and granite metadata", () => {
  const spec = (arch: "phi3" | "granite"): GGUFSpec => ({
    metadata: syntheticMetadata(syntheticModelConfig(arch, "tiny"), "F32"),
    tensors: syntheticTensorSpecs({ arch, preset: "tiny", quant: "F32" }),
  });

  it("phi3: LongRoPE from the factor tensors and rope.scaling.*, partial rotary from rope.dimension_count", async () => {
    const c = await configOf(spec("phi3"));
    expect(c.longRope).toEqual({ originalContextLength: 256 });
    // The converter's √(1 + ln(512/256) / ln(256)), stored as f32.
    expect(c.rope.attnFactor).toBe(Math.fround(Math.sqrt(1 + Math.log(2) / Math.log(256))));
    expect([c.rope.dims, c.headDim, c.rope.layout]).toEqual([32, 64, "neox"]);
  });

  it("phi3 with only one of the LongRoPE factor tensors: ModelConfigError naming the missing one", async () => {
    const err = await configError(withoutTensor(spec("phi3"), "rope_factors_short.weight"));
    expect(err.key).toBe("rope_factors_short.weight");
    expect(err.message).toMatch(/rope_factors_long\.weight and rope_factors_short\.weight/);
  });

  it("granite: its four scales, and logit_scale required", async () => {
    const c = await configOf(spec("granite"));
    expect([c.embeddingScale, c.attentionScale, c.residualScale, c.logitScale]).toEqual([3, 0.09375, 0.5, 2]);
    const err = await configError(withMeta(spec("granite"), "granite.logit_scale", undefined));
    expect(err.key).toBe("granite.logit_scale");
  });
});
