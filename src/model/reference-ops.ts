/**
 * The CPU twins of the ops that the gemma and phi families add to the GPU kernels, as plain
 * functions over Float32Arrays, written the way llama.cpp computes them (the file and
 * function of each are named), for the CPU reference to call and the GPU tests to compare
 * against:
 *
 *   geluTanh / geglu     gemma's feed-forward gate: gelu(gate)·up, GELU's tanh approximation
 *   softcap              cap·tanh(x/cap): gemma2's attention scores and final logits
 *   attendHead           one query head over its keys: scale, soft-cap, sliding window, softmax
 *   longRopeDivisors     phi3's LongRoPE: rope_factors_long or _short, chosen by context
 *   rotateHead           RoPE of a head's leading dims (partial rotary) times an attention factor
 *
 * ```ts
 * geglu(gate, up);                                  // gate = gelu_tanh(gate) · up
 * softcap(logits, 30);                              // gemma2's final_logit_softcapping
 * attendHead(out, q, keyAt, valueAt, pos, { scale: 1 / 16, softcap: 50, window: 4096 }, scores);
 * ```
 */
import { InvalidArgumentError } from "../errors.ts";

/** √(2/π), ggml's SQRT_2_OVER_PI. */
const SQRT_2_OVER_PI = 0.7978845608028654;
/** ggml's GELU_COEF_A. */
const GELU_COEF_A = 0.044715;

/**
 * GELU, tanh approximation: 0.5·x·(1 + tanh(√(2/π)·x·(1 + 0.044715·x²))) (ggml's
 * `ggml_gelu_f32`). llama.cpp's CPU backend looks this up in an f16 table for |x| < 10, so its
 * values differ from this exact one by up to ~1e-3 relative; tests compare with that in mind.
 */
export function geluTanh(x: number): number {
  return 0.5 * x * (1 + Math.tanh(SQRT_2_OVER_PI * x * (1 + GELU_COEF_A * x * x)));
}

/** gate[i] = geluTanh(gate[i]) · up[i]: the GeGLU feed-forward gate (gemma's LLM_FFN_GELU, LLM_FFN_PAR). */
export function geglu(gate: Float32Array, up: Float32Array): void {
  if (up.length < gate.length) throw new InvalidArgumentError("up", `geglu: up has ${up.length} values, gate ${gate.length}`);
  for (let i = 0; i < gate.length; i++) gate[i] = geluTanh(gate[i]!) * up[i]!;
}

/** values[i] = cap · tanh(values[i] / cap), in place (gemma2's attention and final logit soft-capping). */
export function softcap(values: Float32Array, cap: number, count: number = values.length): void {
  if (!(Number.isFinite(cap) && cap > 0)) throw new InvalidArgumentError("softcap", `the cap must be a finite number > 0, got ${cap}`);
  for (let i = 0; i < count; i++) values[i] = cap * Math.tanh(values[i]! / cap);
}

/**
 * The first position a query at `pos` sees: 0 without a window, else pos − window + 1
 * (llama.cpp's `is_masked_swa`, LLAMA_SWA_TYPE_STANDARD, masks key p0 for query p1 when
 * p1 − p0 ≥ n_swa).
 */
export function windowStart(pos: number, window: number | undefined): number {
  return window === undefined ? 0 : Math.max(0, pos - window + 1);
}

/** How one head's scores are formed. */
export interface AttentionScoring {
  /** Multiplies q·k (1/√headDim for llama; gemma's 1/√query_pre_attn_scalar). */
  readonly scale: number;
  /** cap·tanh(score/cap) after the scale (gemma2); absent = none. */
  readonly softcap?: number;
  /** Positions a query sees, itself included (sliding-window layers); absent = all. */
  readonly window?: number;
}

/**
 * out = Σ_p softmax(score(q, k_p))·v_p over the positions p the query at `pos` sees
 * (causal, within the window): score = (q·k)·scale, soft-capped when asked, as
 * llama.cpp's build_attn_mha scales kq, caps it, then masks and soft-maxes. `keyAt(p)` and
 * `valueAt(p)` give the head's key and value at position p (views into a cache);
 * `scores` is scratch of at least pos + 1 values. The rounding follows the CPU reference's
 * attention step for step (scores and weights stored as f32, sums in f64), so that it can
 * call this without a change in output.
 */
export function attendHead(
  out: Float32Array,
  q: Float32Array,
  keyAt: (p: number) => Float32Array,
  valueAt: (p: number) => Float32Array,
  pos: number,
  scoring: AttentionScoring,
  scores: Float32Array,
): void {
  const first = windowStart(pos, scoring.window);
  for (let p = first; p <= pos; p++) {
    const k = keyAt(p);
    let dot = 0;
    for (let i = 0; i < q.length; i++) dot += q[i]! * k[i]!;
    scores[p] = dot * scoring.scale;
    if (scoring.softcap !== undefined) scores[p] = scoring.softcap * Math.tanh(scores[p]! / scoring.softcap);
  }
  let max = -Infinity;
  for (let p = first; p <= pos; p++) max = Math.max(max, scores[p]!);
  let sum = 0;
  for (let p = first; p <= pos; p++) {
    const e = Math.exp(scores[p]! - max);
    scores[p] = e;
    sum += e;
  }
  for (let p = first; p <= pos; p++) scores[p] = scores[p]! / sum;
  const acc = new Float64Array(out.length);
  for (let p = first; p <= pos; p++) {
    const v = valueAt(p);
    for (let i = 0; i < out.length; i++) acc[i] = acc[i]! + scores[p]! * v[i]!;
  }
  out.set(acc);
}

/**
 * LongRoPE's per-pair frequency divisors (phi3): `rope_factors_long` when the context a
 * sequence may hold exceeds the trained original context, else `rope_factors_short`
 * (llama.cpp's `llama_model::get_rope_factors`: n_ctx_seq > n_ctx_orig_yarn).
 */
export function longRopeDivisors(
  factors: { readonly long: Float32Array; readonly short: Float32Array },
  contextLength: number,
  originalContextLength: number,
): Float32Array {
  return contextLength > originalContextLength ? factors.long : factors.short;
}

/** How one head is rotated. */
export interface HeadRotation {
  /** Rotated leading dims of the head (even; fewer than the head for partial rotary). */
  readonly dims: number;
  /** `normal`: pairs (2i, 2i+1); `neox`: pairs (i, i + dims/2). */
  readonly layout: "normal" | "neox";
  /** Multiplies cos and sin (ggml rope's attn_factor, LongRoPE's `rope.scaling.attn_factor`); 1 = none. */
  readonly attnFactor: number;
}

/**
 * Rotates the first `rotation.dims` values of `head` in place by the angles
 * `positionTimesFrequency[i]` (pos · frequency of pair i), scaling cos and sin by the
 * attention factor as ggml's `rope_yarn` does with mscale; dims past `rotation.dims` are
 * left as they are (ggml copies them).
 */
export function rotateHead(head: Float32Array, angles: ArrayLike<number>, rotation: HeadRotation): void {
  const half = rotation.dims / 2;
  for (let i = 0; i < half; i++) {
    const [a, b] = rotation.layout === "normal" ? [2 * i, 2 * i + 1] : [i, i + half];
    const cos = Math.cos(angles[i]!) * rotation.attnFactor;
    const sin = Math.sin(angles[i]!) * rotation.attnFactor;
    const x0 = head[a]!;
    const x1 = head[b]!;
    head[a] = x0 * cos - x1 * sin;
    head[b] = x0 * sin + x1 * cos;
  }
}
