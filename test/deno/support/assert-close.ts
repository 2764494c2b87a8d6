/** Elementwise closeness for GPU-vs-CPU kernel tests. */
import assert from "node:assert/strict";

/** Asserts |got − want| ≤ tol · scale elementwise (NaN fails), naming the first index that is not. */
export function assertClose(what: string, got: ArrayLike<number>, want: ArrayLike<number>, tol: number, scale = 1): void {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < got.length; i++) {
    const err = Math.abs(got[i]! - want[i]!);
    if (!(err <= tol * scale)) assert.fail(`${what}[${i}] = ${got[i]}, expected ${want[i]} (|diff| ${err.toExponential(2)} > ${(tol * scale).toExponential(2)})`);
  }
}
