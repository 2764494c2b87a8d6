/** A seeded PRNG for property tests (mulberry32): the same seed gives the same data. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * `n` values shaped like model weights: roughly normal, each 32-value stretch scaled by
 * its own factor (so block scales differ), with an occasional outlier.
 */
export function weightLike(n: number, seed: number): Float32Array {
  const rand = seededRandom(seed);
  const out = new Float32Array(n);
  let scale = 1;
  for (let i = 0; i < n; i++) {
    if (i % 32 === 0) scale = 0.01 + rand() * 2;
    // Box–Muller; 1 − rand() keeps the logarithm finite.
    const g = Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
    out[i] = (rand() < 0.01 ? 6 : 1) * scale * g;
  }
  return out;
}
