/**
 * Lets the event loop run (I/O, timers, other tasks) before continuing. The CPU runner's
 * steps resolve as microtasks, so without this its loop would starve an HTTP server in
 * the same thread. A MessageChannel message is a macrotask in browsers, Deno and Node
 * alike, and fires as soon as the loop is free: it yields, it does not wait.
 */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => {
      channel.port1.close();
      resolve();
    };
    channel.port2.postMessage(null);
  });
}
