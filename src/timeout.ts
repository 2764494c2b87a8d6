/**
 * Bounds on waits: `withTimeout` settles with `promise`, or rejects with the error
 * `onTimeout` makes once `timeoutMs` have passed, or with `signal`'s reason as soon as it
 * aborts. The timer is a bound on something that may never answer (a GPU, a server, a
 * client), never a way to wait for something: it is cleared as soon as `promise` settles.
 */

/** setTimeout's longest delay; a longer (or infinite) bound sets no timer at all. */
const LONGEST_TIMER_MS = 2 ** 31 - 1;

export async function withTimeout<T>(
  promise: Promise<T>,
  timeoutMs: number,
  onTimeout: () => Error,
  signal?: AbortSignal,
): Promise<T> {
  signal?.throwIfAborted();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let onAbort: (() => void) | undefined;
  const interrupted = new Promise<never>((_, reject) => {
    if (timeoutMs <= LONGEST_TIMER_MS) timer = setTimeout(() => reject(onTimeout()), timeoutMs);
    if (signal) {
      onAbort = () => reject(signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
    }
  });
  try {
    return await Promise.race([promise, interrupted]);
  } finally {
    clearTimeout(timer);
    if (onAbort) signal?.removeEventListener("abort", onAbort);
    // The loser of the race may settle later (rejected); nobody awaits it.
    promise.catch(() => {});
  }
}
