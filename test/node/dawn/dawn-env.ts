/**
 * Test support for Dawn (the npm package `webgpu`), shared by the Node suites here and the
 * Deno suites (test/deno/support/backends.ts).
 *
 * `DAWN_VK_ICD` marks a machine where Dawn finds an adapter. Its value is the Vulkan
 * driver manifest Dawn should use (here Chromium's SwiftShader:
 * `/usr/lib/chromium/vk_swiftshader_icd.json`, because Dawn refuses Mesa's lavapipe), or
 * `default` to leave the machine's own drivers alone (a real GPU).
 *
 * Why not simply set `VK_ICD_FILENAMES` for the whole run: under Deno it would also move
 * Deno's built-in WebGPU from lavapipe to SwiftShader. The Vulkan loader reads the
 * variable when an instance is created, and Dawn makes its instance once per process, so
 * {@link primeDawn} sets it only around Dawn's first adapter discovery and restores it.
 */
import process from "node:process";
import { type ResolvedWebGpu, resolveWebGpu } from "../../../src/gpu/provider.ts";

/** Name of the variable that enables the Dawn suites. */
export const DAWN_ENV = "DAWN_VK_ICD";

/** The Vulkan manifest for Dawn, `default`, or undefined when Dawn is not to be tested here. */
export function dawnIcd(): string | undefined {
  const value = process.env[DAWN_ENV];
  return value === undefined || value === "" ? undefined : value;
}

let primed: Promise<ResolvedWebGpu> | undefined;

/**
 * Creates Dawn's instance with the drivers {@link dawnIcd} names and checks it finds an
 * adapter; later `resolveWebGpu("dawn")` calls (the engine's) reuse that instance.
 * Throws when `DAWN_VK_ICD` is unset: callers skip first.
 */
export function primeDawn(): Promise<ResolvedWebGpu> {
  primed ??= (async () => {
    const icd = dawnIcd();
    if (icd === undefined) throw new Error(`${DAWN_ENV} is not set: Dawn is not tested on this machine`);
    if (icd === "default") return resolveWebGpu("dawn");
    const previous = process.env.VK_ICD_FILENAMES;
    process.env.VK_ICD_FILENAMES = icd;
    try {
      return await resolveWebGpu("dawn");
    } finally {
      if (previous === undefined) delete process.env.VK_ICD_FILENAMES;
      else process.env.VK_ICD_FILENAMES = previous;
    }
  })();
  return primed;
}
