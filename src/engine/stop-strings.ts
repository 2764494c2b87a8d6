/**
 * Holds back streamed text that might be the start of a stop string, so a stop string
 * split over several tokens is never emitted, even in part.
 */
export class StopStringMatcher {
  readonly #stops: readonly string[];
  #held = "";

  constructor(stops: readonly string[]) {
    this.#stops = stops.filter((s) => s.length > 0);
  }

  /**
   * Adds newly decoded text. Returns the text that is safe to emit now and whether a
   * stop string was found (everything from it on is dropped).
   */
  push(text: string): { emit: string; stopped: boolean } {
    const combined = this.#held + text;
    let cut = -1;
    for (const stop of this.#stops) {
      const at = combined.indexOf(stop);
      if (at !== -1 && (cut === -1 || at < cut)) cut = at;
    }
    if (cut !== -1) {
      this.#held = "";
      return { emit: combined.slice(0, cut), stopped: true };
    }
    const keep = this.#longestPartialStop(combined);
    this.#held = combined.slice(combined.length - keep);
    return { emit: combined.slice(0, combined.length - keep), stopped: false };
  }

  /** The text still held back, released when the generation ends for another reason. */
  flush(): string {
    const rest = this.#held;
    this.#held = "";
    return rest;
  }

  /** Length of the longest suffix of `text` that is a proper prefix of some stop string. */
  #longestPartialStop(text: string): number {
    let best = 0;
    for (const stop of this.#stops) {
      for (let n = Math.min(stop.length - 1, text.length); n > best; n--) {
        if (text.endsWith(stop.slice(0, n))) {
          best = n;
          break;
        }
      }
    }
    return best;
  }
}
