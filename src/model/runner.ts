/**
 * The contract between the engine's scheduler and whatever runs the model (the WebGPU
 * model, or the CPU reference for checking). The scheduler decides *what* runs each step;
 * a runner decides *how*.
 *
 * Design points (why the interface looks like this):
 * - A step is a batch of entries from several sequences at once (continuous batching):
 *   prompt chunks and single decode tokens mixed, each tagged with its KV slot and the
 *   position of its first token.
 * - Sampling happens where the logits are (on the GPU for the WebGPU runner), so a step
 *   returns sampled ids, never logits.
 * - A step can run `extraSteps` further decode steps for the entries that sample, each
 *   feeding the id sampled in the previous one straight from device memory, all in one
 *   submission with one readback ("lookahead"): Deno's WebGPU answers every readback
 *   about 11 ms late, so reading each token back caps decode near 88 tokens/s.
 * - Randomness is a pure function of (seed, sampleIndex), so any lookahead, any batch
 *   composition and any runner draw the same tokens.
 */
import { InvalidArgumentError, LlmError } from "../errors.ts";
import { MAX_TOP_LOGPROBS, type SampledLogprobs, type SamplingParams } from "../sampling/sampler.ts";
import type { ModelConfig } from "./config.ts";

export { MAX_TOP_LOGPROBS };
export type { SampledLogprobs, SamplingParams };

/** One sequence's part of a step. */
export interface BatchEntry {
  /** KV-cache slot of the sequence (0 ≤ slot < runner.maxSlots). */
  readonly slot: number;
  /** Position of the first token fed in this step. */
  readonly pos: number;
  /**
   * Tokens fed at positions pos, pos+1, …: a prompt chunk or a known token. Empty means
   * "feed the token this runner sampled last for this slot", which stays on the device.
   */
  readonly tokens: readonly number[];
  /** Sample a token after the last fed one; absent for a prompt chunk before the end. */
  readonly sampling?: SamplingParams;
  /** Index of the token this step samples within its request (the generator's counter). */
  readonly sampleIndex: number;
  /**
   * The sequence's page table: `pages[i]` is the pool page holding positions
   * [i·pageSize, (i+1)·pageSize). It covers every position this call reads or writes
   * (0 … pos + max(1, tokens.length) − 1, plus `extraSteps` for an entry that samples).
   * Two entries of one step may share pages they only read (a common prefix), never a
   * page that either writes.
   */
  readonly pages: readonly number[];
  /**
   * For an entry that samples: also report each sampled token's log-probability and the
   * `logprobs` most likely alternatives (0 … {@link MAX_TOP_LOGPROBS}), in
   * {@link StepIds.logprobs}. Absent: nothing is computed (and nothing is paid).
   */
  readonly logprobs?: number;
  /**
   * Tokens the first sampled id may be (constrained decoding): bit `i & 31` of word
   * `i >> 5` set = token i allowed, ceil(vocabSize / 32) words. Every other logit is -inf
   * before the sampler (penalties included); `logprobs` stay those of the raw logits, as
   * llama.cpp's `n_probs` reports them with a grammar. It covers the first sample
   * only, so a step with a masked entry runs no `extraSteps`. Absent: nothing is paid.
   * Only runners with {@link ModelRunner.masksTokens} accept it.
   */
  readonly tokenMask?: Uint32Array;
}

/** Throws InvalidArgumentError naming `where` when an entry's `logprobs` is not a count in [0, 20]. */
export function checkLogprobsCount(entry: BatchEntry, where: string): void {
  const n = entry.logprobs;
  if (n === undefined || (Number.isInteger(n) && n >= 0 && n <= MAX_TOP_LOGPROBS)) return;
  throw new InvalidArgumentError(`${where}.logprobs`, `${n} must be an integer in [0, ${MAX_TOP_LOGPROBS}]`);
}

/**
 * What `step()` resolves to: per entry, its sampled ids; and, when some entry asked for
 * logprobs, `logprobs[i]` with one {@link SampledLogprobs} per id of entry i (undefined
 * for the entries that did not ask).
 */
export type StepIds = Int32Array[] & {
  readonly logprobs?: readonly (readonly SampledLogprobs[] | undefined)[];
};

/**
 * How an embedding pools the final hidden states of its tokens (llama.cpp's
 * `<arch>.pooling_type`): their mean, the first token's (CLS) or the last token's.
 */
export type Pooling = "mean" | "cls" | "last";

/** The KV cache: one pool of fixed-size pages shared by every sequence (paged attention). */
export interface KvPool {
  /** Positions per page (a power of two, 16–64; default 32). */
  readonly pageSize: number;
  /** Pages in the pool. */
  readonly pageCount: number;
  /** Bytes of the pool (K and V, every layer). */
  readonly bytes: number;
}

/** One whole-page copy of {@link ModelRunner.copyPages}. */
export interface PageCopy {
  readonly from: number;
  readonly to: number;
}

/** What {@link ModelRunner.profileStep} measured. */
export interface StepProfile {
  /** The step's sampled ids, as `step()` returns them. */
  readonly ids: Int32Array[];
  /** GPU time of each kernel dispatch (each in a pass of its own), in recording order. */
  readonly passes: readonly { readonly label: string; readonly ns: number }[];
  /** Bytes of the weights the runner holds (what a decode step reads). */
  readonly weightBytes: number;
}

/** A runner's own accounting of device memory. */
export interface RunnerMemory {
  readonly liveBuffers: number;
  readonly liveBytes: number;
  /** The most bytes live at once since the runner was made. */
  readonly peakBytes: number;
}

/** A model ready to run steps over a paged KV pool. */
export interface ModelRunner {
  readonly config: ModelConfig;
  /** The KV pool every sequence's pages come from. */
  readonly kvPool: KvPool;
  /**
   * How many sequences can run at once (each has a penalty history and a last sampled id);
   * their KV state lives in the shared pool, not in the slot.
   */
  readonly maxSlots: number;
  /** Most positions one sequence may hold (its page table has at most ceil(contextLength / pageSize) pages). */
  readonly contextLength: number;
  /** Most tokens one step may feed, over all entries. */
  readonly maxBatchTokens: number;
  /** A short description for logs and `bench`: backend, provider, adapter. */
  readonly description: string;
  /** Whether `step()` applies {@link BatchEntry.tokenMask} (constrained decoding). */
  readonly masksTokens?: boolean;

  /**
   * Clears a slot's penalty history before a new sequence uses it, seeding it with the
   * tokens that the sequence already has (e.g. a reused prefix whose pages are not fed
   * again; none for a fresh prompt: its tokens arrive as it is fed).
   */
  resetSlot(slot: number, history?: readonly number[]): void;

  /**
   * Copies whole pages (K and V, every layer) in call order with steps: after every step
   * called before, and before every step called after (copy-on-write of a shared partial
   * page). Throws InvalidArgumentError for a page outside the pool.
   */
  copyPages(copies: readonly PageCopy[]): void;

  /**
   * Runs one step over `batch`, then `extraSteps` decode steps for the entries that
   * sample, each fed with the previous step's sampled id. Resolves to the sampled ids:
   * `result[i]` holds `1 + extraSteps` ids for an entry with `sampling`, none otherwise.
   * One submission, one readback (the logprobs of entries that ask for them come back
   * in the same readback as the ids).
   */
  step(batch: readonly BatchEntry[], extraSteps: number): Promise<StepIds>;

  /**
   * Feeds `tokens` to `slot` from `pos` over the page table `pages` (as in
   * {@link BatchEntry.pages}) and returns the full-vocabulary logits at every fed position.
   * For perplexity and correctness checks, not for generation. Without `pages`, pages
   * 0, 1, 2, … of the pool are used (the caller then runs nothing else at the same time).
   */
  logits(slot: number, pos: number, tokens: readonly number[], pages?: readonly number[]): Promise<Float32Array[]>;

  /**
   * Runs one step like `step()` with each kernel timed on the GPU (timestamp queries), for
   * `bench --profile`. Only runners on a GPU with timestamp queries have it.
   */
  profileStep?(batch: readonly BatchEntry[], extraSteps: number): Promise<StepProfile>;

  /**
   * Feeds `tokens` to `slot` from position 0 over the page table `pages` (as in
   * {@link BatchEntry.pages}) and returns the final hidden state (after the output norm,
   * before the LM head) pooled over the tokens as `pooling` says: an `nEmbd` vector, not
   * normalised. Only that vector comes back to the host. The slot's penalty history is
   * left dirty: the caller holds the slot for the call and resets it before reuse.
   */
  embed?(slot: number, tokens: readonly number[], pages: readonly number[], pooling: Pooling): Promise<Float32Array>;

  /** GPU buffers this runner made and has not destroyed yet (zeros on the CPU). */
  memory(): RunnerMemory;

  /**
   * Registers a listener for failures outside any step (a lost device, an uncaptured GPU
   * error): the engine then fails its requests and says so in its state.
   */
  onFailure?(listener: (error: Error) => void): void;

  /** Releases everything the runner made; resolves once it is all gone. Safe to call twice. */
  dispose(): Promise<void>;
}

/** How far loading has come, for progress bars. */
export interface LoadProgress {
  /** `compile`: the GPU runner builds its pipelines, after the weights. */
  readonly phase: "open" | "weights" | "compile" | "ready";
  readonly bytesLoaded: number;
  readonly bytesTotal: number;
  readonly tensorsLoaded: number;
  readonly tensorsTotal: number;
  /** In the `compile` phase: pipelines compiled, and asked for so far (it grows while kernels ask). */
  readonly pipelinesDone?: number;
  readonly pipelinesTotal?: number;
}

/** Sizes and hooks the engine passes to every runner. */
export interface RunnerSizes {
  readonly maxSlots: number;
  /** Most positions one sequence may hold; default min(the model's context, {@link DEFAULT_CONTEXT_CAP}). */
  readonly contextLength?: number;
  readonly maxBatchTokens: number;
  /** Bytes the KV pool may take (default: chosen by the runner from the device's limits). */
  readonly kvCacheBytes?: number;
  /** Positions per page, a power of two in [16, 64] (default {@link DEFAULT_PAGE_SIZE}). */
  readonly pageSize?: number;
  readonly onProgress?: (progress: LoadProgress) => void;
  readonly signal?: AbortSignal;
}

/** Positions per KV page unless `pageSize` says otherwise. */
export const DEFAULT_PAGE_SIZE = 32;

/**
 * Default most positions of one sequence when the model's trained context is longer: real
 * files say 32k–128k, and a pool holding that for even one sequence would not fit a
 * browser's storage bindings.
 */
export const DEFAULT_CONTEXT_CAP = 8192;

/** A runner was used after `dispose()`. */
export class RunnerDisposedError extends LlmError {
  constructor() {
    super("RUNNER_DISPOSED", "the model runner was disposed");
  }
}
