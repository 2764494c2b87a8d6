/**
 * OpenAI's `POST /v1/embeddings` over {@link Engine.embed}: `input` a string, an array of
 * strings, an array of token ids or an array of such arrays; `dimensions` (truncation,
 * then renormalisation); `encoding_format` "float" (default) or "base64" (the
 * little-endian float32 bytes, which OpenAI's clients decode). Every bad field is a 400
 * naming it; an input longer than the context names `--context`.
 */
import type { Engine } from "../engine/engine.ts";
import type { EmbedInput, EmbeddingResult } from "../engine/embed.ts";
import { badRequest } from "./errors.ts";

/** A checked `/v1/embeddings` body. */
export interface EmbeddingsRequest {
  readonly input: EmbedInput;
  readonly dimensions?: number;
  readonly encodingFormat: "float" | "base64";
}

/** The response body, in OpenAI's shape. */
export interface EmbeddingsJson {
  readonly object: "list";
  readonly data: { readonly object: "embedding"; readonly index: number; readonly embedding: number[] | string }[];
  readonly model: string;
  readonly usage: { readonly prompt_tokens: number; readonly total_tokens: number };
}

/** Checks the body's fields (400 naming the field); the engine checks the rest (token ids, lengths). */
export function parseEmbeddingsRequest(body: unknown): EmbeddingsRequest {
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw badRequest("body", "must be a JSON object");
  const b = body as Record<string, unknown>;
  const input = b.input;
  if (input === undefined) throw badRequest("input", "is required", "missing_required_parameter");
  if (typeof input !== "string" && !Array.isArray(input)) {
    throw badRequest("input", "must be a string, an array of strings, an array of token ids, or an array of token-id arrays");
  }
  const format = b.encoding_format ?? "float";
  if (format !== "float" && format !== "base64") throw badRequest("encoding_format", `must be "float" or "base64", got ${JSON.stringify(format)}`);
  const dimensions = b.dimensions;
  if (dimensions !== undefined && (typeof dimensions !== "number" || !Number.isInteger(dimensions) || dimensions < 1)) {
    throw badRequest("dimensions", `must be a positive whole number, got ${JSON.stringify(dimensions)}`);
  }
  return { input: input as EmbedInput, dimensions, encodingFormat: format };
}

/** The little-endian float32 bytes of `vector`, base64-encoded (what OpenAI's `base64` format holds). */
export function float32Base64(vector: Float32Array): string {
  const bytes = new Uint8Array(vector.length * 4);
  const view = new DataView(bytes.buffer);
  vector.forEach((v, i) => view.setFloat32(i * 4, v, true));
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

/** OpenAI's response body for `result`. */
export function embeddingsJson(result: EmbeddingResult, model: string, format: "float" | "base64"): EmbeddingsJson {
  return {
    object: "list",
    data: result.embeddings.map((v, index) => ({
      object: "embedding",
      index,
      embedding: format === "base64" ? float32Base64(v) : Array.from(v),
    })),
    model,
    usage: { prompt_tokens: result.promptTokens, total_tokens: result.promptTokens },
  };
}

/** Runs one `/v1/embeddings` request; `signal` (the client's connection) aborts it. */
export async function embeddingsResponse(engine: Engine, body: unknown, model: string, signal: AbortSignal): Promise<EmbeddingsJson> {
  const request = parseEmbeddingsRequest(body);
  const result = await engine.embed(request.input, { dimensions: request.dimensions, signal });
  return embeddingsJson(result, model, request.encodingFormat);
}
