/**
 * `withIdleTimeout` bounds the GPU's silence, not the total wait: a long prefill made of
 * many finishing submissions must not time out, a submission that never finishes must.
 * The clock is vitest's fake one, so nothing here depends on how fast the machine is.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { withIdleTimeout } from "../../../src/timeout.ts";

class Stalled extends Error {}

/** A job that finishes when told to, and a progress clock the test moves. */
function job() {
  let finish!: (value: string) => void;
  const done = new Promise<string>((resolve) => (finish = resolve));
  let lastProgressAt = Date.now();
  return { done, finish, progress: () => (lastProgressAt = Date.now()), lastProgressAt: () => lastProgressAt };
}

describe("withIdleTimeout", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("waits past the bound many times over while steps keep finishing", async () => {
    const j = job();
    const waited = withIdleTimeout(j.done, 1_000, j.lastProgressAt, () => new Stalled());
    // 30 steps of 900 ms: 27 s in all, 27 times the bound, never 1 s of silence.
    for (let i = 0; i < 30; i++) {
      await vi.advanceTimersByTimeAsync(900);
      j.progress();
    }
    j.finish("ids");
    await expect(waited).resolves.toBe("ids");
  });

  it("rejects once nothing has finished for the bound, even after earlier steps", async () => {
    const j = job();
    const waited = withIdleTimeout(j.done, 1_000, j.lastProgressAt, () => new Stalled("no progress"));
    const outcome = expect(waited).rejects.toBeInstanceOf(Stalled);
    for (let i = 0; i < 5; i++) {
      await vi.advanceTimersByTimeAsync(900);
      j.progress();
    }
    await vi.advanceTimersByTimeAsync(999);
    // Not yet: 999 ms of silence.
    let settled = false;
    waited.then(() => (settled = true), () => (settled = true));
    await vi.advanceTimersByTimeAsync(0);
    expect(settled).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    await outcome;
  });

  it("counts silence from the start of the wait, not from progress long before it", async () => {
    const j = job();
    await vi.advanceTimersByTimeAsync(5_000); // the last step finished 5 s before we wait
    const waited = withIdleTimeout(j.done, 1_000, j.lastProgressAt, () => new Stalled());
    await vi.advanceTimersByTimeAsync(500);
    j.finish("ok");
    await expect(waited).resolves.toBe("ok");
  });
});
