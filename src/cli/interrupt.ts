/** Ctrl-C handling for commands that must dispose their engine before the process ends. */
import process from "node:process";

/**
 * The exit code of a command stopped by Ctrl-C: 128 + SIGINT's number, what a shell
 * reports for a process SIGINT killed, so scripts (`cmd || ...`, `$?`) can tell an
 * interrupt from a failure (1) even though the command caught the signal to clean up.
 */
export const INTERRUPTED_EXIT_CODE = 130;

/**
 * Calls `handler` on SIGINT instead of letting the process die, so the command can abort
 * its request and dispose its engine (awaited) before exiting. Returns the unsubscribe.
 */
export function onInterrupt(handler: () => void): () => void {
  process.on("SIGINT", handler);
  return () => process.off("SIGINT", handler);
}
