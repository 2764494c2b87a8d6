/**
 * What the gemma3 and olmo2 files read from their metadata, beyond what the llama.cpp
 * cross-checks on the tiny files cover: gemma3 without `attention.sliding_window` has no
 * sliding layers and no second RoPE base (llama.cpp's LLAMA_SWA_TYPE_NONE), a named
 * `rope.freq_base_swa` wins over the default, and an olmo2 file with a sliding window
 * (OLMo 3) is refused, naming the key.
 */
import { describe, expect, it } from "vitest";
import { ModelConfigError } from "../../../src/errors.ts";
import { architecture } from "../../../src/model/arch/index.ts";
import { syntheticModelConfig } from "../../../src/model/synthetic.ts";

const shape = { nLayers: 12, nEmbd: 256, nHeads: 4, headDim: 64 };
const scalarsOf = (arch: string, metadata: Record<string, number>) =>
  architecture(arch).scalars?.(metadata, (suffix) => `${arch}.${suffix}`, shape);

describe("gemma3 metadata", () => {
  it("has no sliding layers nor sliding RoPE base without attention.sliding_window", () => {
    const s = scalarsOf("gemma3", {});
    expect(s?.slidingLayers).toBeUndefined();
    expect(s?.slidingRopeBase).toBeUndefined();
    // The tiny preset's config without its window: every layer global, on the file's base.
    const { slidingLayers: _layers, slidingWindow: _window, slidingRopeBase: _base, ...c } = syntheticModelConfig("gemma3", "tiny");
    const ops = architecture("gemma3").layerOps(c, 0);
    expect(ops.find((op) => op.op === "rope")).toEqual({ op: "rope" });
    expect(ops.find((op) => op.op === "attention")).toEqual({ op: "attention" });
  });

  it("reads rope.freq_base_swa when the file names it, and the window's layers follow the period", () => {
    const s = scalarsOf("gemma3", { "gemma3.attention.sliding_window": 512, "gemma3.rope.freq_base_swa": 20000 });
    expect(s?.slidingRopeBase).toBe(20000);
    expect(s?.slidingLayers?.filter((sliding) => !sliding)).toHaveLength(shape.nLayers / 6);
  });
});

describe("olmo2 metadata", () => {
  it("refuses a sliding window (OLMo 3), naming the key", () => {
    expect(() => scalarsOf("olmo2", { "olmo2.attention.sliding_window": 4096 })).toThrow(ModelConfigError);
    expect(() => scalarsOf("olmo2", { "olmo2.attention.sliding_window": 4096 })).toThrow(/olmo2\.attention\.sliding_window/);
    expect(scalarsOf("olmo2", {})).toEqual({});
  });
});
