/**
 * How `bench --profile` names and sums kernels: pipeline labels (as matmul.ts and the other
 * kernel modules build them) map to one family per kernel and weight type.
 */
import { describe, expect, it } from "vitest";
import { kernelOf, totalsByKernel } from "../../../src/gpu/profiler.ts";

describe("profiler", () => {
  it("names the kernel family of each pipeline label", () => {
    expect(kernelOf("matvec_Q4_K_wg64_r4_bias_sg")).toBe("matvec Q4_K");
    expect(kernelOf("matvec_Q4_K_blocks_wg32_r4")).toBe("matvec Q4_K");
    expect(kernelOf("matvec_Q8_0_lanes_wg32_rl8")).toBe("matvec Q8_0");
    expect(kernelOf("matvec_Q8_0_wg16_r4_b8_bias_sg")).toBe("matvec Q8_0 (batch)");
    expect(kernelOf("matmul_F16_bias")).toBe("matmul F16");
    expect(kernelOf("matmul_Q5_0_lanes_wg32")).toBe("matmul Q5_0");
    expect(kernelOf("rmsnorm_n896_e0.000001_wg64_res")).toBe("rmsnorm+residual");
    expect(kernelOf("rmsnorm_n896_e0.000001_wg64_res_gather")).toBe("rmsnorm+residual");
    expect(kernelOf("rmsnorm_n896_e0.000001_wg64")).toBe("rmsnorm");
    expect(kernelOf("attention_hd64_h14_kv2_ctx512_gb7_f32_split32x1_combine")).toBe("attention");
    expect(kernelOf("sample")).toBe("sample");
  });

  it("sums calls and time per kernel, largest first; negative clock steps count as zero", () => {
    const totals = totalsByKernel([
      { label: "matvec_Q4_K_wg64_r4", ns: 300 },
      { label: "rope_neox_hd64_h8_kv2_r64_ctx256_f32", ns: 50 },
      { label: "matvec_Q4_K_blocks_wg32_r4_bias", ns: 200 },
      { label: "rope_neox_hd64_h8_kv2_r64_ctx256_f32", ns: -5 },
    ]);
    expect(totals).toEqual([
      { kernel: "matvec Q4_K", calls: 2, ns: 500 },
      { kernel: "rope", calls: 2, ns: 50 },
    ]);
  });
});
