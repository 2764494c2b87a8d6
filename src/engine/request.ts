/**
 * One generation request inside the engine: its settings, where it is (queued, feeding
 * its prompt, decoding, done), the text it has streamed, and how it settles.
 */
import type { StreamDecoder, Tokenizer } from "../tokenizer/index.ts";
import { Channel } from "./channel.ts";
import type { PageTable } from "./kv-pages.ts";
import { RequestAbortedError } from "./errors.ts";
import type { SampledLogprobs, SamplingParams } from "../model/runner.ts";
import { StopStringMatcher } from "./stop-strings.ts";
import type { GrammarMatcher, TokenGrammar } from "../grammar/index.ts";
import { type ToolCall, type ToolCallFormat, toolCallDeltas, ToolCallStream } from "./tool-calls.ts";
import type {
  FinishReason,
  GenerateInput,
  GenerateOptions,
  GenerationChunk,
  GenerationResult,
  GenerationStream,
  TokenLogprob,
  TokenLogprobCandidate,
} from "./types.ts";

/** A request's options after validation and defaults. */
export interface ResolvedRequest {
  readonly promptIds: readonly number[];
  readonly sampling: SamplingParams;
  readonly maxTokens: number;
  readonly stop: readonly string[];
  readonly ignoreEos: boolean;
  readonly lookahead: number;
  /** Alternatives to report with each token's logprob; absent: no logprobs. */
  readonly logprobs?: number;
  /** The grammar the output must match (from `grammar` or `jsonSchema`), compiled for the model's vocabulary. */
  readonly grammar?: TokenGrammar;
  /** The format tool calls are read in, when tools were offered. */
  readonly toolFormat?: ToolCallFormat;
}

export type RequestPhase = "queued" | "prefill" | "decode" | "done";

/** What the caller asked for, kept until the model is loaded and can tokenize it. */
export type RequestInput = GenerateInput;

export class Request implements GenerationStream {
  readonly input: RequestInput;
  readonly options: GenerateOptions;
  readonly result: Promise<GenerationResult>;
  phase: RequestPhase = "queued";
  /** Slot (penalty history, last sampled id) while the request runs. */
  slot = -1;
  /** Its KV pages while it runs. */
  table: PageTable | undefined;
  /**
   * What the prefill phase feeds: the prompt, or after a preemption the prompt and what
   * was generated before it (recomputed, mostly from the prefix cache).
   */
  feedIds: readonly number[] = [];
  /** Tokens of `feedIds` fed so far (reused ones included). */
  fed = 0;
  /** Position of the next token to feed. */
  pos = 0;
  /** Prompt tokens whose KV pages came from the prefix cache at the first admission. */
  cachedTokens = 0;
  /** Times the request gave its pages back to let others go on (recompute preemption). */
  preemptions = 0;
  readonly generated: number[] = [];

  /** Which choice of its request it is (0 unless `n` > 1). */
  readonly index: number;
  /** Choice 0 of the same request, for the other choices: they fork its prompt's pages. */
  readonly parent: Request | undefined;
  /** Whether the stream belongs to a group of choices, which closes it once all are done. */
  readonly #shared: boolean;

  #settings: ResolvedRequest | undefined;
  #tokenizer: Tokenizer | undefined;
  #decoder: StreamDecoder | undefined;
  #stops = new StopStringMatcher([]);
  #toolStream: ToolCallStream | undefined;
  #matcher: GrammarMatcher | undefined;
  #mask: Uint32Array | undefined;
  #toolCalls: readonly ToolCall[] = [];
  readonly #channel: Channel<GenerationChunk>;
  /** With `logprobs`: one per generated token. */
  readonly #logprobs: TokenLogprob[] = [];
  #text = "";
  #resolve!: (r: GenerationResult) => void;
  #reject!: (e: unknown) => void;
  readonly #t = { created: performance.now(), admitted: 0, firstToken: 0, last: 0 };

  /**
   * @param choice for a choice of an `n` > 1 request: its index, the group's stream, and
   * choice 0 (absent for choice 0 itself).
   */
  constructor(
    input: RequestInput,
    options: GenerateOptions,
    choice?: { index: number; channel: Channel<GenerationChunk>; parent?: Request },
  ) {
    this.input = input;
    this.options = options;
    this.index = choice?.index ?? 0;
    this.parent = choice?.parent;
    this.#shared = choice !== undefined;
    this.#channel = choice?.channel ?? new Channel<GenerationChunk>();
    this.result = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    // The caller may only iterate, or only await `result`: neither may be reported unhandled.
    this.result.catch(() => {});
  }

  /** Settings resolved once the model (and so the tokenizer) is there. */
  get settings(): ResolvedRequest {
    if (!this.#settings) throw new Error("request used before it was prepared");
    return this.#settings;
  }

  get prepared(): boolean {
    return this.#settings !== undefined;
  }

  /** Binds the request to the loaded model's tokenizer, with its prompt tokenized. */
  prepare(settings: ResolvedRequest, tokenizer: Tokenizer): void {
    this.#settings = settings;
    this.#tokenizer = tokenizer;
    this.#decoder = tokenizer.createStreamDecoder();
    this.#stops = new StopStringMatcher(settings.stop);
    this.#matcher = settings.grammar?.matcher();
    this.#toolStream = settings.toolFormat ? new ToolCallStream(settings.toolFormat) : undefined;
  }

  [Symbol.asyncIterator](): AsyncIterator<GenerationChunk> {
    return this.#channel[Symbol.asyncIterator]();
  }

  /** Whether a grammar constrains the output: each sample then needs {@link nextTokenMask} first. */
  get constrained(): boolean {
    return this.#matcher !== undefined;
  }

  /** The tokens the grammar allows next (a bitmask reused between steps), or undefined when unconstrained. */
  nextTokenMask(): Uint32Array | undefined {
    const matcher = this.#matcher;
    if (!matcher) return undefined;
    this.#mask ??= new Uint32Array(matcher.grammar.maskWords);
    matcher.fillNextTokenMask(this.#mask);
    return this.#mask;
  }

  get done(): boolean {
    return this.phase === "done";
  }

  /** Tokens still allowed before `maxTokens`. */
  get remaining(): number {
    return this.settings.maxTokens - this.generated.length;
  }

  /** The sequence's tokens so far: the prompt, then what it generated. */
  get sequenceIds(): number[] {
    return [...this.settings.promptIds, ...this.generated];
  }

  /**
   * Starts (or, after a preemption, resumes) the request on `slot` with `table`, whose
   * first `reused` positions already hold the right keys and values.
   */
  admit(slot: number, table: PageTable, feedIds: readonly number[], reused: number): void {
    this.slot = slot;
    this.table = table;
    this.feedIds = feedIds;
    this.fed = reused;
    this.pos = reused;
    this.phase = "prefill";
    if (this.preemptions === 0) {
      this.cachedTokens = reused;
      this.#t.admitted = performance.now();
    }
  }

  /** Back to the queue without its slot and pages: it resumes by recomputing them. */
  preempt(): void {
    this.slot = -1;
    this.table = undefined;
    this.phase = "queued";
    this.preemptions++;
  }

  /**
   * Takes the next sampled id. Returns false once the request has finished (the id may
   * have been dropped: an end-of-generation token, or one sampled past a stop).
   */
  accept(id: number, contextFull: boolean, logprobs?: SampledLogprobs): boolean {
    if (this.done) return false;
    if (this.generated.length === 0) this.#t.firstToken = performance.now();
    this.#t.last = performance.now();
    if (!this.settings.ignoreEos && this.#tokenizer!.isEog(id)) {
      this.finish("stop");
      return false;
    }
    // The mask let through only what the grammar accepts; a refusal here means an id
    // sampled without its mask, which must not reach the output.
    if (this.#matcher && !this.#matcher.acceptToken(id)) {
      this.fail(new Error(`internal: token ${id} was sampled outside the grammar's mask`));
      return false;
    }
    this.generated.push(id);
    const logprob = logprobs && this.#tokenLogprob(logprobs);
    if (logprob) this.#logprobs.push(logprob);
    const { emit, stopped } = this.#stops.push(this.#decoder!.push(id));
    this.#emit([id], this.#toolStream ? this.#toolStream.push(emit) : emit, logprob);
    if (this.#toolStream) this.#sendToolCalls(this.#toolStream.takeCalls());
    if (stopped) this.finish("stop", false);
    else if (this.#matcher?.isTerminated()) this.finish("stop");
    else if (this.remaining <= 0 || contextFull) this.finish("length");
    return !this.done;
  }

  /**
   * Ends the generation normally. Text held back (an incomplete character, or the start
   * of what might have been a stop string) is released, unless a stop string matched.
   */
  finish(reason: FinishReason, releaseHeld = true): void {
    if (this.done) return;
    this.phase = "done";
    if (releaseHeld) {
      const held = this.#stops.push(this.#decoder?.flush() ?? "").emit + this.#stops.flush();
      this.#emit([], this.#toolStream ? this.#toolStream.push(held) : held);
    }
    reason = this.#finishToolCalls(reason);
    this.#channel.push({ index: this.index, tokens: [], text: "", finishReason: reason });
    if (!this.#shared) this.#channel.close();
    this.#resolve(this.#result(reason));
  }

  /**
   * Parses the text held back as a possible tool call: its content is streamed, its calls
   * sent as deltas; with calls the finish reason is "tool_calls".
   */
  #finishToolCalls(reason: FinishReason): FinishReason {
    if (!this.#toolStream) return reason;
    this.#sendToolCalls(this.#toolStream.takeCalls());
    const { content, calls } = this.#toolStream.finish();
    this.#emit([], content);
    this.#sendToolCalls(calls);
    return this.#toolCalls.length > 0 ? "tool_calls" : reason;
  }

  /** Streams completed calls as deltas, numbered after the ones sent before. */
  #sendToolCalls(calls: readonly ToolCall[]): void {
    if (calls.length === 0) return;
    const deltas = toolCallDeltas(calls).map((d) => ({ ...d, index: d.index + this.#toolCalls.length }));
    this.#toolCalls = [...this.#toolCalls, ...calls];
    this.#channel.push({ index: this.index, tokens: [], text: "", toolCalls: deltas });
  }

  /** Ends the generation with an error (disposal, abort, device failure). */
  fail(error: unknown): void {
    if (this.done) return;
    this.phase = "done";
    if (!this.#shared) this.#channel.fail(error);
    this.#reject(error);
  }

  /** Settles an aborted request with the abort's reason. */
  failAborted(): void {
    this.fail(new RequestAbortedError(this.options.signal?.reason));
  }

  #emit(tokens: number[], text: string, logprob?: TokenLogprob): void {
    this.#text += text;
    const logprobs = logprob ? { logprobs: [logprob] } : {};
    if (tokens.length > 0 || text.length > 0) this.#channel.push({ index: this.index, tokens, text, ...logprobs });
  }

  /** A sampled token's logprobs with each id's text and bytes. */
  #tokenLogprob(l: SampledLogprobs): TokenLogprob {
    const candidate = (token: number, logprob: number): TokenLogprobCandidate => {
      const bytes = this.#tokenizer!.pieceBytes(token);
      return { token, text: new TextDecoder().decode(bytes), bytes: [...bytes], logprob };
    };
    return { ...candidate(l.id, l.logprob), top: l.topIds.map((t, j) => candidate(t, l.topLogprobs[j]!)) };
  }


  #result(finishReason: FinishReason): GenerationResult {
    const t = this.#t;
    const first = t.firstToken || performance.now();
    const last = t.last || first;
    const promptTokens = this.settings.promptIds.length;
    const completionTokens = this.generated.length;
    const prefillMs = first - (t.admitted || first);
    const decodeMs = last - first;
    const cachedTokens = this.cachedTokens;
    const tokens = [...this.generated];
    const toolCalls = this.#toolCalls.length > 0 ? { toolCalls: this.#toolCalls } : {};
    const logprobs = this.settings.logprobs !== undefined ? { logprobs: [...this.#logprobs] } : {};
    return {
      text: this.#text,
      tokens,
      promptTokens: [...this.settings.promptIds],
      finishReason,
      ...toolCalls,
      ...logprobs,
      choices: [{ index: this.index, text: this.#text, tokens, finishReason, ...toolCalls, ...logprobs }],
      usage: { promptTokens, completionTokens, totalTokens: promptTokens + completionTokens, cachedTokens },
      timings: {
        queuedMs: (t.admitted || first) - t.created,
        timeToFirstTokenMs: first - t.created,
        prefillMs,
        decodeMs,
        prefillTokensPerSecond: prefillMs > 0 ? ((promptTokens - cachedTokens) / prefillMs) * 1000 : 0,
        decodeTokensPerSecond: decodeMs > 0 ? ((completionTokens - 1) / decodeMs) * 1000 : 0,
      },
    };
  }
}
