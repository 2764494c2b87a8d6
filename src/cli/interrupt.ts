/** Ctrl-C handling for commands that must dispose their engine before the process ends. */
import process from "node:process";

/**
 * Calls `handler` on SIGINT instead of letting the process die, so the command can abort
 * its request and dispose its engine (awaited) before exiting. Returns the unsubscribe.
 */
export function onInterrupt(handler: () => void): () => void {
  process.on("SIGINT", handler);
  return () => process.off("SIGINT", handler);
}
