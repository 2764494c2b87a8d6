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

/**
 * Bounds a wait on something that answers in steps (a GPU finishing one submission after
 * another): settles with `promise`, or rejects with `onTimeout()` once `idleMs` have passed
 * with no step, that is with `lastProgressAt()` (a `Date.now()` time) no later than
 * `idleMs` ago. A long but moving job (a 1B model's prefill on a software GPU, a minute
 * or more) is not a hang; one submission that never finishes is.
 */
export async function withIdleTimeout<T>(
  promise: Promise<T>,
  idleMs: number,
  lastProgressAt: () => number,
  onTimeout: () => Error,
): Promise<T> {
  const started = Date.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const idle = new Promise<never>((_, reject) => {
    const check = (): void => {
      const quietFor = Date.now() - Math.max(started, lastProgressAt());
      if (quietFor >= idleMs) reject(onTimeout());
      else timer = setTimeout(check, idleMs - quietFor);
    };
    if (idleMs <= LONGEST_TIMER_MS) timer = setTimeout(check, idleMs);
  });
  try {
    return await Promise.race([promise, idle]);
  } finally {
    clearTimeout(timer);
    promise.catch(() => {});
  }
}
