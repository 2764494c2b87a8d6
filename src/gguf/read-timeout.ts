/**
 * The read timeout of URL sources: a request fails with `SourceError` `READ_TIMEOUT` when
 * no bytes arrive for a set time, whether the server never answers, or sends headers and
 * part of the body and then stalls. Without it, `generate --model http://…` against a
 * server that accepts and never answers waited forever, with no message.
 *
 * It is an idle timeout, not a deadline: every chunk that arrives restarts it, so a large
 * tensor on a slow but live connection is never cut off. The caller's `AbortSignal` is
 * honoured at every await here too, even by an injected `fetch` that ignores signals.
 */
import { InvalidArgumentError, SourceError } from "../errors.ts";
import { withTimeout } from "../timeout.ts";

/** Default of `OpenSourceOptions.readTimeoutMs`: a stalled server fails after 30 s without a byte. */
export const DEFAULT_READ_TIMEOUT_MS = 30_000;

/** A `fetch` as the URL source calls it. */
export type RangeFetch = (url: string, init: RequestInit) => Promise<Response>;

/**
 * Checks a `readTimeoutMs` option: a positive number of milliseconds, or `Infinity` for none;
 * undefined gives {@link DEFAULT_READ_TIMEOUT_MS}.
 */
export function readTimeoutOf(value: number | undefined): number {
  if (value === undefined) return DEFAULT_READ_TIMEOUT_MS;
  if (typeof value !== "number" || Number.isNaN(value) || value <= 0) {
    throw new InvalidArgumentError("readTimeoutMs", `must be a positive number of milliseconds (or Infinity), got ${String(value)}`);
  }
  return value;
}

/**
 * `fetchFn` with the idle timeout `timeoutMs` on the answer and on every chunk of its body,
 * and with `init.signal` raced at every wait. `url` names the source in the error.
 */
export function withReadTimeout(fetchFn: typeof fetch, url: string, timeoutMs: number): RangeFetch {
  return async (target, init) => {
    const stall = new AbortController();
    const caller = init.signal ?? undefined;
    const signal = caller ? AbortSignal.any([caller, stall.signal]) : stall.signal;
    const what = describeRange(init);
    const onStall = (): SourceError => {
      const error = new SourceError(
        "READ_TIMEOUT",
        url,
        `no bytes arrived for ${timeoutMs} ms while reading ${what}; the server stalled ` +
          "(--read-timeout or readTimeoutMs sets how long to wait)",
      );
      stall.abort(error); // cancels the request or the body under way
      return error;
    };
    const res = await withTimeout(fetchFn(target, { ...init, signal }), timeoutMs, onStall, caller);
    if (!res.body) return res;
    const body = stallCheckedBody(res.body, timeoutMs, onStall, caller);
    return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
  };
}

function describeRange(init: RequestInit): string {
  const range = new Headers(init.headers).get("range");
  return range ? range.replace(/^bytes=/, "bytes ") : "the file";
}

/** `body`, failing when one chunk takes longer than `timeoutMs` to arrive. */
function stallCheckedBody(
  body: ReadableStream<Uint8Array>,
  timeoutMs: number,
  onStall: () => SourceError,
  caller: AbortSignal | undefined,
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      // A rejection here errors the stream: `arrayBuffer()` rejects with the same error.
      const { done, value } = await withTimeout(reader.read(), timeoutMs, onStall, caller);
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
}

