/**
 * Scale searches for the K-quant encoders: per sub-block, find the scale (and for the
 * asymmetric formats the offset) that minimizes the squared error of the rounded values.
 *
 * The search tries a handful of candidate scales around "range / levels", assigns the
 * nearest level to each value under each candidate, refits scale (and offset) by least
 * squares for those levels, and keeps the candidate with the lowest error. This is the
 * idea behind GGML's `make_qkx2_quants` / `make_qx_quants` without their importance
 * weights; it is deterministic (a fixed candidate list, first best wins).
 */

/** Candidate scales tried: levels·(1 + k·STEP) / range for k in [-SPREAD, SPREAD]. */
const SPREAD = 10;
const STEP = 1 / (10 * 8);

/** Result of a fit, written into a caller-owned pair to avoid an allocation per sub-block. */
export interface ScaleFit {
  scale: number;
  /** Asymmetric fits only: the offset `m ≥ 0` in x ≈ scale·q − m. */
  min: number;
}

/**
 * Fits x[off..off+n) ≈ scale·q − min with integer q in [0, nmax], scale ≥ 0 and min ≥ 0
 * (GGML's K-quants store the offset as a non-negative multiple subtracted from every
 * value, so a sub-block that is all positive gets min = 0).
 */
export function fitScaleMin(x: Float32Array, off: number, n: number, nmax: number, fit: ScaleFit): void {
  let lo = 0;
  let hi = -Infinity;
  for (let i = 0; i < n; i++) {
    const v = x[off + i];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (!(hi > lo)) {
    // Every value equals lo ≤ 0: represented exactly by q = 0 and min = -lo.
    fit.scale = 0;
    fit.min = -lo;
    return;
  }
  let bestErr = Infinity;
  let bestScale = (hi - lo) / nmax;
  let bestMin = -lo;
  let sxx = 0;
  for (let i = 0; i < n; i++) sxx += x[off + i] * x[off + i];
  for (let k = -SPREAD; k <= SPREAD; k++) {
    const iscale = (nmax * (1 + k * STEP)) / (hi - lo);
    let sq = 0;
    let sqq = 0;
    let sx = 0;
    let sqx = 0;
    for (let i = 0; i < n; i++) {
      const v = x[off + i];
      // floor(t + 0.5) is Math.round for these finite values, and the inline clamp keeps
      // this innermost loop free of calls (it runs 21 times per value).
      const t = Math.floor(iscale * (v - lo) + 0.5);
      const q = t > nmax ? nmax : t;
      sq += q;
      sqq += q * q;
      sx += v;
      sqx += q * v;
    }
    // Least squares for x ≈ a·q + b with these levels; b is −min and must not be positive.
    const det = n * sqq - sq * sq;
    let a = det > 0 ? (n * sqx - sq * sx) / det : 0;
    let b = det > 0 ? (sqq * sx - sq * sqx) / det : 0;
    if (b > 0) {
      b = 0;
      a = sqq > 0 ? sqx / sqq : 0;
    }
    if (!(a > 0)) continue;
    // Σ(a·q + b − x)² expanded, so no second pass over the values is needed.
    const err = a * a * sqq + 2 * a * b * sq + n * b * b - 2 * a * sqx - 2 * b * sx + sxx;
    if (err < bestErr) {
      bestErr = err;
      bestScale = a;
      bestMin = -b;
    }
  }
  fit.scale = bestScale;
  fit.min = bestMin;
}

/**
 * Fits x[off..off+n) ≈ scale·q with integer q in [−nneg, nneg − 1] (a signed scale, so
 * the value of largest magnitude can take the extra negative level). Returns the scale.
 */
export function fitSymmetric(x: Float32Array, off: number, n: number, nneg: number): number {
  let amax = 0;
  let max = 0;
  for (let i = 0; i < n; i++) {
    const v = x[off + i];
    if (Math.abs(v) > amax) {
      amax = Math.abs(v);
      max = v;
    }
  }
  if (amax === 0) return 0;
  let bestErr = Infinity;
  let bestScale = max / -nneg;
  let sxx = 0;
  for (let i = 0; i < n; i++) sxx += x[off + i] * x[off + i];
  for (let k = -SPREAD; k <= SPREAD; k++) {
    const iscale = -(nneg * (1 + k * STEP)) / max;
    let sqq = 0;
    let sqx = 0;
    for (let i = 0; i < n; i++) {
      const v = x[off + i];
      const t = Math.floor(iscale * v + 0.5);
      const q = t < -nneg ? -nneg : t > nneg - 1 ? nneg - 1 : t;
      sqq += q * q;
      sqx += q * v;
    }
    if (sqq === 0) continue;
    // With the levels fixed, the best scale is Σqx/Σq² and the error Σx² − (Σqx)²/Σq².
    const err = sxx - (sqx * sqx) / sqq;
    if (err < bestErr) {
      bestErr = err;
      bestScale = sqx / sqq;
    }
  }
  return bestScale;
}

/** `v` limited to [lo, hi]. */
export function clamp(v: number, lo: number, hi: number): number {
  return v < lo ? lo : v > hi ? hi : v;
}
