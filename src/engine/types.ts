/** The public shapes of the engine's API: options, chunks, results. */
import type { JsonSchema } from "../grammar/index.ts";
import type { ToolCall, ToolCallDelta, ToolChoice, ToolDefinition } from "./tool-calls.ts";

export type { ToolCall, ToolCallDelta, ToolChoice, ToolDefinition } from "./tool-calls.ts";

/** One chat message, rendered through the model's chat template. */
export interface ChatMessage {
  /** `system`, `user`, `assistant` or `tool`; templates may know others. */
  readonly role: string;
  /** The text ("" for an assistant message that only called tools). */
  readonly content: string;
  /** For an assistant message: the tool calls it made (as a result's `toolCalls` gives them). */
  readonly toolCalls?: readonly { readonly id?: string; readonly name: string; readonly arguments: string }[];
  /** For a `tool` message: the id of the call it answers. */
  readonly toolCallId?: string;
  /** For a `tool` message: the function's name. */
  readonly name?: string;
}

/** Token ids fed to the model as they are (BOS not added). */
export interface TokenPrompt {
  readonly tokens: readonly number[];
}

/** What to generate from: text, chat messages, or token ids. */
export type GenerateInput = string | readonly ChatMessage[] | TokenPrompt;

/** Why a generation ended. */
export type FinishReason =
  /** An end-of-generation token or a stop string. */
  | "stop"
  /** `maxTokens` reached, or the context is full. */
  | "length"
  /** The model called tools (see {@link GenerateOptions.tools}). */
  | "tool_calls";

/** Per-request options; every one is honoured, defaults are llama.cpp's where it has one. */
export interface GenerateOptions {
  /** Most tokens to generate (default 256; never past the context). */
  readonly maxTokens?: number;
  /** 0 = greedy (default 0.8). */
  readonly temperature?: number;
  /** 0 = off (default 40). */
  readonly topK?: number;
  /** In (0, 1]; 1 = off (default 0.95). */
  readonly topP?: number;
  /** In [0, 1); 0 = off (default 0.05). */
  readonly minP?: number;
  /** ≥ 0; 1 = off (default 1). */
  readonly repeatPenalty?: number;
  /** Tokens the penalties look back over (default 64). */
  readonly penaltyWindow?: number;
  /** In [-2, 2] (default 0). */
  readonly presencePenalty?: number;
  /** In [-2, 2] (default 0). */
  readonly frequencyPenalty?: number;
  /** Same seed, same output; random when absent. */
  readonly seed?: number;
  /** Strings that end the generation; they are not part of the text. */
  readonly stop?: string | readonly string[];
  /** Keep going past end-of-generation tokens (for benchmarks). */
  readonly ignoreEos?: boolean;
  /** Aborting ends the stream at once and frees the request's KV slot. */
  readonly signal?: AbortSignal;
  /** Decode steps submitted before one readback (default: the engine's). */
  readonly lookahead?: number;
  /** For chat input: end the rendered prompt with the assistant's turn (default true). */
  readonly addGenerationPrompt?: boolean;
  /**
   * Choices to generate from the prompt (default 1). They share the prompt's KV pages
   * (the partial last page is copied), and choice i samples with the seed
   * {@link choiceSeed}(seed, i), so choice 0 is what `n: 1` gives and choice i what
   * `n: 1` with that seed gives. Chunks say which choice they belong to (`index`); the
   * result lists them all in `choices`.
   */
  readonly n?: number;
  /**
   * Report each generated token's log-probability in the chunks and the result (default
   * false). Log-probabilities are a log-softmax of the model's raw logits, before
   * penalties, temperature and top-k/top-p/min-p, as OpenAI's `logprobs` and llama.cpp's
   * `n_probs` report them: the model's distribution, not the sampler's. On WebGPU they are
   * computed on the device beside the sampled id and come back in the same readback.
   */
  readonly logprobs?: boolean;
  /** With `logprobs`: also the N most likely tokens at each position, 0–20 (default 0). */
  readonly topLogprobs?: number;
  /**
   * Constrains the output to a GBNF grammar (llama.cpp's format, start rule `root`): every
   * step samples only among tokens the grammar allows, an end-of-generation token only
   * where it may end, and once nothing can follow the generation ends with "stop".
   * Invalid GBNF throws `GrammarError` naming the line and column. Not with `jsonSchema`.
   */
  readonly grammar?: string;
  /**
   * Constrains the output to JSON valid under this schema, through `jsonSchemaToGbnf`
   * (llama.cpp's conventions; `{type: "object"}` is any object, OpenAI's json_object). A
   * keyword it cannot enforce throws `UnsupportedSchemaError` naming it. Not with `grammar`.
   */
  readonly jsonSchema?: JsonSchema;
  /**
   * Functions the model may call (chat input only), rendered through the model's chat
   * template (or described in a system message when it cannot show them). Calls the
   * model writes, in its template's format, come back as `toolCalls` with finish reason
   * "tool_calls", not as text.
   */
  readonly tools?: readonly ToolDefinition[];
  /**
   * `auto` (default): the model decides; `none`: no tools offered; `required` or
   * `{type: "function", function: {name}}`: a call is forced through constrained decoding,
   * its arguments valid under the function's `parameters` schema. Not with `grammar` or
   * `jsonSchema`.
   */
  readonly toolChoice?: ToolChoice;
}

/** One candidate token at a position, with its log-probability (see {@link GenerateOptions.logprobs}). */
export interface TokenLogprobCandidate {
  /** Token id. */
  readonly token: number;
  /** The token's text (a lone byte of a multi-byte character shows as U+FFFD: use `bytes`). */
  readonly text: string;
  /** The token's UTF-8 bytes (llama.cpp's `token_to_piece`). */
  readonly bytes: readonly number[];
  /** ln p of the token, ≤ 0. */
  readonly logprob: number;
}

/** A generated token's log-probability and the most likely alternatives at its position. */
export interface TokenLogprob extends TokenLogprobCandidate {
  /** The `topLogprobs` most likely tokens, most likely first (equal: lower id first). */
  readonly top: readonly TokenLogprobCandidate[];
}

/** A piece of a streamed generation. */
export interface GenerationChunk {
  /** The choice it belongs to (0 unless `n` > 1). */
  readonly index: number;
  /** Token ids produced since the previous chunk. */
  readonly tokens: readonly number[];
  /** Text produced since the previous chunk (complete UTF-8 characters only). */
  readonly text: string;
  /** With `logprobs`: one entry per id of `tokens`. */
  readonly logprobs?: readonly TokenLogprob[];
  /** Pieces of tool calls (OpenAI's `delta.tool_calls`): join `arguments` by `index`. */
  readonly toolCalls?: readonly ToolCallDelta[];
  /** Set on the last chunk. */
  readonly finishReason?: FinishReason;
}

export interface Usage {
  readonly promptTokens: number;
  readonly completionTokens: number;
  readonly totalTokens: number;
  /**
   * Prompt tokens whose keys and values were reused from the prefix cache (pages an
   * earlier request with the same prefix left in the KV pool) instead of being computed.
   */
  readonly cachedTokens: number;
}

export interface Timings {
  /** From the call to the request getting a KV slot. */
  readonly queuedMs: number;
  /** From the call to the first generated token being known. */
  readonly timeToFirstTokenMs: number;
  /** From getting a slot to the first token (the prompt's processing). */
  readonly prefillMs: number;
  /** From the first token to the last. */
  readonly decodeMs: number;
  readonly prefillTokensPerSecond: number;
  readonly decodeTokensPerSecond: number;
}

/** One choice of a generation (see {@link GenerateOptions.n}). */
export interface GenerationChoice {
  readonly index: number;
  readonly text: string;
  /** Generated token ids (end-of-generation token excluded). */
  readonly tokens: readonly number[];
  readonly finishReason: FinishReason;
  /** The tools it called (finish reason "tool_calls"); absent otherwise. */
  readonly toolCalls?: readonly ToolCall[];
  /** With `logprobs`: one entry per id of `tokens`. */
  readonly logprobs?: readonly TokenLogprob[];
}

/**
 * What a finished generation produced. `text`, `tokens`, `finishReason` and `timings`
 * are choice 0's; `usage` counts the prompt once and the tokens of every choice.
 */
export interface GenerationResult {
  readonly text: string;
  /** Generated token ids (end-of-generation token excluded). */
  readonly tokens: readonly number[];
  /** The ids fed to the model, BOS included. */
  readonly promptTokens: readonly number[];
  readonly finishReason: FinishReason;
  /** Choice 0's tool calls (finish reason "tool_calls"); absent otherwise. */
  readonly toolCalls?: readonly ToolCall[];
  /** With `logprobs`: choice 0's, one entry per id of `tokens`. */
  readonly logprobs?: readonly TokenLogprob[];
  readonly usage: Usage;
  readonly timings: Timings;
  /** Every choice, in index order (one unless `n` > 1). */
  readonly choices: readonly GenerationChoice[];
}

/** A running generation: iterate it for chunks, or await `result`. */
export interface GenerationStream extends AsyncIterable<GenerationChunk> {
  /** Settles when the generation ends; rejects with the error that ended it. */
  readonly result: Promise<GenerationResult>;
}

/** Load progress, reported through `EngineOptions.onProgress`. */
export type { LoadProgress } from "../model/runner.ts";

/** Where the engine is in its life. */
export type EngineState = "loading" | "ready" | "failed" | "disposed";
