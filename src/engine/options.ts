/** Validation and defaults of request options, shared by every door (library, CLI, server). */
import { InvalidRequestError } from "./errors.ts";
import { MAX_TOP_LOGPROBS, type SamplingParams } from "../model/runner.ts";
import type { GenerateOptions } from "./types.ts";

/** Defaults follow llama.cpp's sampling defaults. */
export const DEFAULT_GENERATE_OPTIONS = {
  maxTokens: 256,
  temperature: 0.8,
  topK: 40,
  topP: 0.95,
  minP: 0.05,
  repeatPenalty: 1,
  penaltyWindow: 64,
  presencePenalty: 0,
  frequencyPenalty: 0,
} as const;

function check(ok: boolean, param: string, message: string): void {
  if (!ok) throw new InvalidRequestError(param, message);
}

function isFiniteNumber(v: unknown): v is number {
  return typeof v === "number" && Number.isFinite(v);
}

/**
 * Throws an {@link InvalidRequestError} naming the first invalid option. Runs before a
 * request is queued, so a server can answer 400 without touching the model.
 */
export function validateGenerateOptions(o: GenerateOptions): void {
  const intAtLeast = (v: number | undefined, name: string, min: number) =>
    check(v === undefined || (Number.isInteger(v) && v >= min), name, `must be an integer ≥ ${min}, got ${v}`);
  const inRange = (v: number | undefined, name: string, ok: (x: number) => boolean, range: string) =>
    check(v === undefined || (isFiniteNumber(v) && ok(v)), name, `must be ${range}, got ${v}`);

  intAtLeast(o.maxTokens, "maxTokens", 1);
  inRange(o.temperature, "temperature", (x) => x >= 0, "≥ 0");
  intAtLeast(o.topK, "topK", 0);
  inRange(o.topP, "topP", (x) => x > 0 && x <= 1, "in (0, 1]");
  inRange(o.minP, "minP", (x) => x >= 0 && x < 1, "in [0, 1)");
  inRange(o.repeatPenalty, "repeatPenalty", (x) => x > 0, "> 0");
  intAtLeast(o.penaltyWindow, "penaltyWindow", 0);
  inRange(o.presencePenalty, "presencePenalty", (x) => x >= -2 && x <= 2, "in [-2, 2]");
  inRange(o.frequencyPenalty, "frequencyPenalty", (x) => x >= -2 && x <= 2, "in [-2, 2]");
  check(
    o.seed === undefined || (Number.isInteger(o.seed) && o.seed >= 0),
    "seed",
    `must be a non-negative integer, got ${o.seed}`,
  );
  intAtLeast(o.lookahead, "lookahead", 1);
  intAtLeast(o.n, "n", 1);
  check(o.logprobs === undefined || typeof o.logprobs === "boolean", "logprobs", `must be a boolean, got ${o.logprobs}`);
  intAtLeast(o.topLogprobs, "topLogprobs", 0);
  check((o.topLogprobs ?? 0) <= MAX_TOP_LOGPROBS, "topLogprobs", `must be at most ${MAX_TOP_LOGPROBS}, got ${o.topLogprobs}`);
  check(!o.topLogprobs || o.logprobs === true, "topLogprobs", "needs logprobs: true");
  check(o.n === undefined || o.n <= MAX_CHOICES, "n", `must be at most ${MAX_CHOICES}, got ${o.n}`);
  const stops = o.stop === undefined ? [] : typeof o.stop === "string" ? [o.stop] : o.stop;
  check(
    Array.isArray(stops) && stops.every((s) => typeof s === "string"),
    "stop",
    "must be a string or an array of strings",
  );
}

/** Most choices one request may ask for: each runs as a sequence of its own. */
export const MAX_CHOICES = 128;

/** A seed for requests that give none. */
export function randomSeed(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0]!;
}

/**
 * The seed of choice `index` of a request seeded with `seed`: the seed itself for choice
 * 0, then steps of 2³²/φ (the golden-ratio increment of SplitMix and Weyl sequences), so
 * neighbouring choices get seeds far apart. Since a token's randomness is a function of
 * (seed, token index), this is what makes choice i equal to an `n: 1` request with it.
 */
export function choiceSeed(seed: number, index: number): number {
  return (seed + Math.imul(index, 0x9e3779b9)) >>> 0;
}

/** The sampling settings of a validated request, defaults filled in. */
export function samplingParamsOf(o: GenerateOptions): SamplingParams {
  const d = DEFAULT_GENERATE_OPTIONS;
  return {
    temperature: o.temperature ?? d.temperature,
    topK: o.topK ?? d.topK,
    topP: o.topP ?? d.topP,
    minP: o.minP ?? d.minP,
    repeatPenalty: o.repeatPenalty ?? d.repeatPenalty,
    penaltyWindow: o.penaltyWindow ?? d.penaltyWindow,
    presencePenalty: o.presencePenalty ?? d.presencePenalty,
    frequencyPenalty: o.frequencyPenalty ?? d.frequencyPenalty,
    seed: (o.seed ?? randomSeed()) >>> 0,
  };
}

/** The stop strings of a request as a list. */
export function stopStringsOf(o: GenerateOptions): readonly string[] {
  return o.stop === undefined ? [] : typeof o.stop === "string" ? [o.stop] : [...o.stop];
}
