/**
 * Chat prompts from the model's own Jinja template (`tokenizer.chat_template`), rendered
 * with `@huggingface/jinja`, the same engine Hugging Face's JavaScript libraries use.
 */
import { Template } from "@huggingface/jinja";
import { TokenizerError } from "../errors.ts";
import type { Tokenizer } from "./tokenizer.ts";
import { metadataValue, type TokenizerMetadata } from "./vocab.ts";

/** One chat message. */
export interface ChatMessage {
  /** "system", "user", "assistant", or another role the template knows. */
  readonly role: string;
  readonly content: string;
}

/** Options of `renderChat`. */
export interface RenderChatOptions {
  /** End with the opening of an assistant turn (default true). */
  readonly addGenerationPrompt?: boolean;
}

/** A template with the tokenizer whose BOS/EOS texts it may refer to. */
export interface TokenizerWithTemplate {
  readonly tokenizer: Tokenizer;
  /** The Jinja source; undefined when the model has none. */
  readonly template: string | undefined;
}

/** Where `renderChat` finds the template: a model's metadata, or a tokenizer and template. */
export type ChatTemplateSource = TokenizerMetadata | TokenizerWithTemplate;

const TEMPLATE_KEY = "tokenizer.chat_template";
// Parsed templates by source text: a chat server renders the same one on every request.
const parsedTemplates = new Map<string, Template>();
const MAX_PARSED_TEMPLATES = 16;

function isTokenizerWithTemplate(source: ChatTemplateSource): source is TokenizerWithTemplate {
  // GGUF keys are dotted ("tokenizer.ggml.model"), so a bare "tokenizer" key is ours.
  const t = (source as { tokenizer?: unknown }).tokenizer;
  return typeof t === "object" && t !== null && "encode" in t;
}

/**
 * Renders `messages` into the prompt text the model was trained on. Throws
 * `TokenizerError` `NO_CHAT_TEMPLATE` when the model has no template, and
 * `CHAT_TEMPLATE_ERROR` (naming the problem) when the template fails to parse or render.
 */
export function renderChat(source: ChatTemplateSource, messages: readonly ChatMessage[], options: RenderChatOptions = {}): string {
  const { template, bosToken, eosToken } = resolve(source);
  if (template === undefined || template.trim() === "") {
    throw new TokenizerError("NO_CHAT_TEMPLATE", `the model has no ${TEMPLATE_KEY}, so chat messages cannot be rendered`);
  }
  let parsed = parsedTemplates.get(template);
  if (!parsed) {
    try {
      parsed = new Template(template);
    } catch (err) {
      throw new TokenizerError("CHAT_TEMPLATE_ERROR", `${TEMPLATE_KEY} does not parse: ${messageOf(err)}`, { cause: err });
    }
    // Bounded: templates may come from requests, not only from the model file.
    if (parsedTemplates.size >= MAX_PARSED_TEMPLATES) parsedTemplates.clear();
    parsedTemplates.set(template, parsed);
  }
  try {
    return parsed.render({
      messages: messages.map((m) => ({ role: m.role, content: m.content })),
      add_generation_prompt: options.addGenerationPrompt ?? true,
      bos_token: bosToken,
      eos_token: eosToken,
    });
  } catch (err) {
    throw new TokenizerError("CHAT_TEMPLATE_ERROR", `${TEMPLATE_KEY} failed to render: ${messageOf(err)}`, { cause: err });
  }
}

function resolve(source: ChatTemplateSource): { template: string | undefined; bosToken: string; eosToken: string } {
  if (isTokenizerWithTemplate(source)) {
    const { tokenizer, template } = source;
    const text = (id: number | undefined): string => (id === undefined ? "" : tokenizer.tokenText(id));
    return { template, bosToken: text(tokenizer.bos), eosToken: text(tokenizer.eos) };
  }
  const template = metadataValue(source, TEMPLATE_KEY);
  if (template !== undefined && typeof template !== "string") {
    throw new TokenizerError("CHAT_TEMPLATE_ERROR", `${TEMPLATE_KEY} is a ${typeof template}, not a string`);
  }
  return { template, bosToken: tokenTextFromMetadata(source, "bos"), eosToken: tokenTextFromMetadata(source, "eos") };
}

/**
 * The text of BOS or EOS straight from metadata, without building a whole tokenizer;
 * absent ids fall back to llama.cpp's defaults for the vocabulary kind.
 */
function tokenTextFromMetadata(meta: TokenizerMetadata, which: "bos" | "eos"): string {
  const tokens = metadataValue(meta, "tokenizer.ggml.tokens");
  if (!Array.isArray(tokens)) return "";
  const model = metadataValue(meta, "tokenizer.ggml.model");
  const fallback = model === "gpt2" ? 11 : which === "bos" ? 1 : 2;
  const raw = metadataValue(meta, `tokenizer.ggml.${which}_token_id`);
  const id = typeof raw === "number" || typeof raw === "bigint" ? Number(raw) : fallback;
  const text = id >= 0 && id < tokens.length ? tokens[id] : undefined;
  return typeof text === "string" ? text : "";
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
