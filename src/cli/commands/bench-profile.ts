/**
 * `bench --profile`: where the GPU time of a prefill and of a decode step goes, kernel by
 * kernel, from timestamp queries (src/gpu/profiler.ts), beside the wall time per token of
 * normal (unprofiled) decoding. The runner is loaded the way the engine loads it
 * (`loadRunner`), but driven directly, so that exactly one step is profiled.
 */
import { identityPages } from "../../model/kv-pool.ts";
import { performance } from "node:perf_hooks";
import { loadRunner } from "../../engine/backends.ts";
import type { BatchEntry } from "../../model/runner.ts";
import { GREEDY } from "../../sampling/sampler.ts";
import { GpuError } from "../../errors.ts";
import { openGGUF } from "../../gguf/reader.ts";
import { type KernelTotal, type PassTiming, totalsByKernel } from "../../gpu/profiler.ts";
import { tokenizerFromMetadata } from "../../tokenizer/index.ts";

/** What to profile. */
export interface ProfileOptions {
  readonly model: string;
  readonly webgpu: "auto" | "dawn" | "deno";
  readonly contextLength?: number;
  readonly promptTokens: number;
  /** Decode steps per submission in the wall-time measurement (the engine's lookahead). */
  readonly lookahead: number;
  readonly matvecShape?: "auto" | "lanes" | "workgroup" | "blocks";
}

/** One profiled step. */
export interface StepReport {
  /** Tokens the step fed. */
  readonly tokens: number;
  /** GPU time summed over every kernel, µs. */
  readonly gpuUs: number;
  readonly kernels: readonly KernelTotal[];
}

/** The profile `bench --profile --json` prints. */
export interface ProfileReport {
  readonly model: string;
  readonly runner: string;
  readonly weightBytes: number;
  readonly prefill: StepReport;
  readonly decode: StepReport;
  /** Wall time per decoded token, unprofiled, with `lookahead` steps per submission. */
  readonly decodeWallUsPerToken: number;
  readonly lookahead: number;
}

const PROMPT_TEXT =
  "The old lighthouse keeper counted the ships that passed in the night, one by one, and wrote their names in a book. ";

/** Loads the model, profiles its prompt step and one decode step, then times normal decoding. */
export async function profileModel(o: ProfileOptions): Promise<ProfileReport> {
  const file = await openGGUF(o.model);
  const tokenizer = tokenizerFromMetadata(file.metadata);
  const runner = await loadRunner(file, { backend: "webgpu", webgpu: o.webgpu, matvecShape: o.matvecShape }, {
    maxSlots: 1,
    maxBatchTokens: Math.max(256, o.promptTokens),
    contextLength: o.contextLength,
  });
  try {
    const profileStep = runner.profileStep?.bind(runner);
    if (!profileStep) throw new GpuError("GPU_UNSUPPORTED", `${runner.description}: this runner cannot time its kernels (no timestamp queries)`);
    const lookahead = Math.max(1, o.lookahead);
    const budget = runner.contextLength - 4 * (lookahead + 1) - 8;
    let prompt = tokenizer.encode(PROMPT_TEXT);
    while (prompt.length < o.promptTokens) prompt = prompt.concat(tokenizer.encode(PROMPT_TEXT, { addSpecial: false }));
    prompt = prompt.slice(0, Math.max(1, Math.min(o.promptTokens, budget)));

    const pages = identityPages(runner.contextLength, runner.kvPool.pageSize);
    // Warm-up (pipelines first used, caches), then the profiled prompt.
    runner.resetSlot(0);
    await runner.step([entry(0, prompt, 0, pages)], 0);
    runner.resetSlot(0);
    const prefill = await profileStep([entry(0, prompt, 0, pages)], 0);

    let pos = prompt.length;
    let sampled = 1;
    const decodeStep = async (extra: number) => {
      const ids = await runner.step([entry(pos, [], sampled, pages)], extra);
      pos += 1 + extra;
      sampled += 1 + extra;
      return ids;
    };
    await decodeStep(lookahead - 1);
    const decode = await profileStep([entry(pos, [], sampled, pages)], 0);
    pos += 1;
    sampled += 1;

    const start = performance.now();
    const rounds = 3;
    for (let i = 0; i < rounds; i++) await decodeStep(lookahead - 1);
    const wallUsPerToken = ((performance.now() - start) * 1000) / (rounds * lookahead);
    return {
      model: file.metadata["general.name"]?.toString() ?? o.model,
      runner: runner.description,
      weightBytes: decode.weightBytes,
      prefill: report(prompt.length, prefill.passes),
      decode: report(1, decode.passes),
      decodeWallUsPerToken: wallUsPerToken,
      lookahead,
    };
  } finally {
    await runner.dispose();
  }
}

/** Slot 0 over pages 0, 1, …: the only sequence running. */
function entry(pos: number, tokens: readonly number[], sampleIndex: number, pages: readonly number[]): BatchEntry {
  return { slot: 0, pos, tokens, sampling: GREEDY, sampleIndex, pages };
}

function report(tokens: number, passes: readonly PassTiming[]): StepReport {
  const kernels = totalsByKernel(passes);
  return { tokens, gpuUs: kernels.reduce((s, k) => s + k.ns, 0) / 1000, kernels };
}

/** The profile as a table: kernel, calls, µs, share of GPU time. */
export function formatProfile(r: ProfileReport): string {
  const lines = [`profile of ${r.model} on ${r.runner}`];
  const table = (title: string, s: StepReport) => {
    lines.push("", `${title}: ${s.tokens} token(s), GPU busy ${s.gpuUs.toFixed(0)} µs`);
    lines.push(`  ${"kernel".padEnd(28)}${"calls".padStart(7)}${"µs".padStart(11)}${"share".padStart(8)}`);
    for (const k of s.kernels) {
      const us = k.ns / 1000;
      lines.push(`  ${k.kernel.padEnd(28)}${String(k.calls).padStart(7)}${us.toFixed(1).padStart(11)}${((100 * us) / s.gpuUs).toFixed(1).padStart(7)}%`);
    }
  };
  table("prefill", r.prefill);
  table("decode step", r.decode);
  const matvecUs = r.decode.kernels.filter((k) => k.kernel.startsWith("matvec")).reduce((s, k) => s + k.ns / 1000, 0);
  lines.push("");
  if (matvecUs > 0) {
    lines.push(`decode matvecs read ${(r.weightBytes / 2 ** 20).toFixed(1)} MiB of weights in ${matvecUs.toFixed(0)} µs: ${(r.weightBytes / matvecUs / 1e3).toFixed(1)} GB/s`);
  }
  const gpuShare = (100 * r.decode.gpuUs) / r.decodeWallUsPerToken;
  const rest =
    gpuShare > 100
      ? "GPU-bound (a profiled step runs each kernel in a pass of its own, which costs a little more)"
      : "the rest is host work and gaps";
  lines.push(
    `decode wall time ${r.decodeWallUsPerToken.toFixed(0)} µs/token (${(1e6 / r.decodeWallUsPerToken).toFixed(1)} tok/s, ` +
      `lookahead ${r.lookahead}); GPU busy ${r.decode.gpuUs.toFixed(0)} µs per token (${gpuShare.toFixed(0)}%): ${rest}`,
  );
  return lines.join("\n");
}
