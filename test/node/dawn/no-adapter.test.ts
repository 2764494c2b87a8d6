/**
 * Dawn with no Vulkan driver it can use: `resolveWebGpu` must say how to get one rather
 * than hand back a GPU that finds no adapter later. Its own file because Dawn reads the
 * drivers once per process (vitest runs each file in its own process): here a manifest
 * that does not exist, so the loader finds no driver at all.
 */
import process from "node:process";
import { describe, expect, it } from "vitest";
import { GpuError } from "../../../src/errors.ts";
import { resolveWebGpu } from "../../../src/gpu/provider.ts";
import { DAWN_ENV, dawnIcd } from "./dawn-env.ts";

describe.skipIf(dawnIcd() === undefined)(`Dawn without an adapter (${DAWN_ENV} set: the package is installed)`, () => {
  it("is NO_ADAPTER naming VK_ICD_FILENAMES, for dawn and for auto (Node has no fallback)", async () => {
    process.env.VK_ICD_FILENAMES = "/nonexistent/no-such-driver.json";
    for (const kind of ["dawn", "auto"] as const) {
      const error = await resolveWebGpu(kind).then(() => undefined, (e: unknown) => e);
      expect(error).toBeInstanceOf(GpuError);
      expect((error as GpuError).code).toBe("NO_ADAPTER");
      expect((error as GpuError).message).toContain("VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json");
    }
  });
});
