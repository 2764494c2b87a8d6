/**
 * A one-consumer async queue: the engine's loop pushes chunks, the caller iterates them.
 * Pushing never blocks (the loop must not wait on a slow reader); a closed or failed
 * channel ends every pending and future read.
 */
export class Channel<T> implements AsyncIterable<T> {
  readonly #items: T[] = [];
  #waiter: { resolve: (r: IteratorResult<T>) => void; reject: (e: unknown) => void } | undefined;
  #done = false;
  #error: unknown = undefined;
  #iterated = false;

  push(item: T): void {
    if (this.#done) return;
    if (this.#waiter) {
      const w = this.#waiter;
      this.#waiter = undefined;
      w.resolve({ value: item, done: false });
    } else {
      this.#items.push(item);
    }
  }

  close(): void {
    this.#finish(undefined);
  }

  fail(error: unknown): void {
    this.#finish(error ?? new Error("channel failed"));
  }

  #finish(error: unknown): void {
    if (this.#done) return;
    this.#done = true;
    this.#error = error;
    // A failed (aborted, disposed) stream ends at once: what it had buffered is dropped.
    if (error !== undefined) this.#items.length = 0;
    const w = this.#waiter;
    this.#waiter = undefined;
    if (!w) return;
    if (error !== undefined) w.reject(error);
    else w.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    if (this.#iterated) throw new TypeError("a generation stream can be iterated once");
    this.#iterated = true;
    return {
      next: () => {
        const item = this.#items.shift();
        if (item !== undefined) return Promise.resolve({ value: item, done: false });
        if (this.#done) {
          return this.#error !== undefined
            ? Promise.reject(this.#error)
            : Promise.resolve({ value: undefined, done: true });
        }
        return new Promise((resolve, reject) => (this.#waiter = { resolve, reject }));
      },
      return: () => Promise.resolve({ value: undefined, done: true }),
    };
  }
}
