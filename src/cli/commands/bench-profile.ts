/**
 * `bench --profile`: where the GPU time of a prefill and of a decode step goes, kernel by
 * kernel, from timestamp queries (src/gpu/profiler.ts), beside the wall time per token of
 * normal (unprofiled) decoding, through the engine (`Engine.profile`, on slot 0 while no
 * request runs).
 */
import type { Engine } from "../../engine/engine.ts";
import { type KernelTotal, type PassTiming, totalsByKernel } from "../../gpu/profiler.ts";

/** What to profile. */
export interface ProfileOptions {
  readonly promptTokens: number;
  /** Decode steps per submission in the wall-time measurement (the engine's lookahead). */
  readonly lookahead: number;
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

/** Profiles the engine's prompt step and one decode step, then times normal decoding. */
export async function profileModel(engine: Engine, o: ProfileOptions): Promise<ProfileReport> {
  const lookahead = Math.max(1, o.lookahead);
  const rounds = 3;
  // The prompt leaves room for the warm-up, profiled and timed decode steps.
  const budget = engine.limits.contextLength - (rounds + 1) * lookahead - 1;
  const tokenizer = engine.tokenizer;
  let prompt = tokenizer.encode(PROMPT_TEXT);
  while (prompt.length < o.promptTokens) prompt = prompt.concat(tokenizer.encode(PROMPT_TEXT, { addSpecial: false }));
  prompt = prompt.slice(0, Math.max(1, Math.min(o.promptTokens, budget)));
  const p = await engine.profile(prompt, { lookahead, rounds });
  return {
    model: engine.config.name,
    runner: p.runner,
    weightBytes: p.decode.weightBytes,
    prefill: report(prompt.length, p.prefill.passes),
    decode: report(1, p.decode.passes),
    decodeWallUsPerToken: p.decodeWallUsPerToken,
    lookahead,
  };
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
