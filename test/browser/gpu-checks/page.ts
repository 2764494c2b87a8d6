/**
 * The GPU check page: puts `window.gpuChecks` (api.ts) in place for the Playwright spec,
 * which calls one check at a time and asserts on what it answers.
 */
import { createGpuContext } from "../../../src/gpu/device.ts";
import type { AdapterReport, GpuChecks } from "./api.ts";
import { checkMatrix } from "./matrix.ts";
import { runModel } from "./model.ts";
import { checkOps } from "./ops.ts";

async function adapter(): Promise<AdapterReport> {
  const ctx = await createGpuContext();
  try {
    const info = ctx.adapterInfo;
    return {
      description: info?.description ?? "",
      vendor: info?.vendor ?? "",
      architecture: info?.architecture ?? "",
      subgroups: ctx.features.subgroups,
      f16: ctx.features.f16,
    };
  } finally {
    await ctx.destroy();
  }
}

const checks: GpuChecks = { adapter, matrix: checkMatrix, ops: checkOps, model: runModel };
window.gpuChecks = checks;
document.body.dataset.ready = "true";
