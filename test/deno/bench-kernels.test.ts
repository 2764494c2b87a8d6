/**
 * Smoke test of the kernel micro-benchmark (bench/kernels.ts) on the current adapter
 * (lavapipe here): small sizes, two matvec types and one matmul, JSON output.
 * Run: deno test -A test/deno/bench-kernels.test.ts
 */
import assert from "node:assert/strict";

interface KernelsResult {
  readonly adapter: string;
  readonly json_path: string;
  readonly timing: string;
  readonly copy: { readonly bytes: number; readonly gbps: number };
  readonly matvec: readonly { readonly type: string; readonly bytes: number; readonly weightBytes: number; readonly gbps: number; readonly pctOfCopy: number }[];
  readonly matmul: readonly { readonly type: string; readonly flop: number; readonly gflops: number }[];
}

Deno.test("bench/kernels.ts --quick --json reports bandwidth and FLOP/s for the kernels asked for", async () => {
  const root = new URL("../../", import.meta.url);
  const outDir = await Deno.makeTempDir({ prefix: "bench-kernels-" });
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "bench/kernels.ts", "--quick", "--types", "Q8_0,Q4_K", "--matmul-types", "Q8_0", "--target-ms", "20", "--out-dir", outDir, "--json"],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, stderr);
  const r = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1) ?? "") as KernelsResult;
  assert.ok(r.adapter.length > 0);
  assert.ok(r.timing === "timestamp" || r.timing === "wall", r.timing);
  assert.ok(r.copy.gbps > 0 && Number.isFinite(r.copy.gbps), `copy ${r.copy.gbps}`);
  assert.deepEqual(r.matvec.map((m) => m.type), ["Q8_0", "Q4_K"]);
  for (const m of r.matvec) {
    // --quick is 1024×1024: Q8_0 is 34 bytes per 32 values, Q4_K 144 per 256; plus x and y in f32.
    const weight = m.type === "Q8_0" ? (1024 * 1024 * 34) / 32 : (1024 * 1024 * 144) / 256;
    assert.equal(m.weightBytes, weight, m.type);
    assert.equal(m.bytes, weight + 2 * 1024 * 4, m.type);
    assert.ok(m.gbps > 0 && Number.isFinite(m.gbps), `${m.type} ${m.gbps}`);
    assert.ok(Math.abs(m.pctOfCopy - (100 * m.gbps) / r.copy.gbps) < 1e-9);
  }
  assert.equal(r.matmul.length, 1);
  assert.equal(r.matmul[0]!.flop, 2 * 64 * 512 * 512); // --quick: 64 tokens × 512×512
  assert.ok(r.matmul[0]!.gflops > 0 && Number.isFinite(r.matmul[0]!.gflops));
  const saved = JSON.parse(await Deno.readTextFile(r.json_path)) as KernelsResult;
  assert.deepEqual(saved.matvec, r.matvec);
  await Deno.remove(outDir, { recursive: true });
});
