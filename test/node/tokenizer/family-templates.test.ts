/**
 * The chat templates of the model families in src/model/arch/ render through
 * @huggingface/jinja (src/tokenizer/chat.ts). The templates are the real ones, copied from
 * llama.cpp's models/templates/; what is checked is read from each template's text: every
 * message's content appears, in order, and the prompt ends with the template's own
 * generation prompt.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { renderChat } from "../../../src/tokenizer/chat.ts";
import { syntheticMetadata, syntheticModelConfig } from "../../../src/model/synthetic.ts";
import { syntheticTokenizerMetadata } from "../../../src/tokenizer/synthetic.ts";
import { TokenType } from "../../../src/tokenizer/vocab.ts";

const CONVERSATION = [
  { role: "system", content: "Answer in one word." },
  { role: "user", content: "Capital of France?" },
  { role: "assistant", content: "Paris." },
  { role: "user", content: "And of Italy?" },
];

/** Per family: the template file and the generation prompt its text writes at the end. */
const FAMILIES = [
  // SmolLM3's reasoning mode defaults to "/think" (no "/no_think" in the system prompt):
  // a plain assistant turn, no empty think block.
  { arch: "smollm3", file: "HuggingFaceTB-SmolLM3-3B.jinja", generationPrompt: "<|im_start|>assistant\n", systemRole: true },
  // Gemma 2's template raises on a system message: the conversation starts at the user.
  { arch: "gemma2", file: "google-gemma-2-2b-it.jinja", generationPrompt: "<start_of_turn>model\n", systemRole: false },
  { arch: "phi3", file: "microsoft-Phi-3.5-mini-instruct.jinja", generationPrompt: "<|assistant|>\n", systemRole: true },
  // Granite 3.3's: with a system message of its own, it writes no dated default one.
  { arch: "granite", file: "ibm-granite-granite-3.3-2B-Instruct.jinja", generationPrompt: "<|start_of_role|>assistant<|end_of_role|>", systemRole: true },
] as const;

describe.each(FAMILIES)("$arch chat template", ({ file, generationPrompt, systemRole }) => {
  const conversation = systemRole ? CONVERSATION : CONVERSATION.filter((m) => m.role !== "system");
  const template = readFileSync(new URL(`../../fixtures/chat-templates/${file}`, import.meta.url), "utf8");
  const metadata = Object.fromEntries(syntheticTokenizerMetadata("gpt2", 512, { chatTemplate: template }));

  it("renders a conversation: every message in order, then the generation prompt", () => {
    const text = renderChat(metadata, conversation);
    let from = 0;
    for (const m of conversation) {
      const at = text.indexOf(m.content, from);
      expect(at, `"${m.content}" after offset ${from} in:\n${text}`).toBeGreaterThanOrEqual(0);
      from = at + m.content.length;
    }
    expect(text.endsWith(generationPrompt)).toBe(true);
    expect(renderChat(metadata, conversation, { addGenerationPrompt: false }).endsWith(generationPrompt)).toBe(false);
  });
});

// llama.cpp keeps no Gemma 3 template: synthetic gemma3 files carry Gemma 2's (checked above).
describe.each(["gemma2", "gemma3"] as const)("%s synthetic files", (arch) => {
  it("carry Gemma 2's template as llama.cpp keeps it, its turn markers as control tokens, <end_of_turn> as EOS", () => {
    const template = readFileSync(new URL("../../fixtures/chat-templates/google-gemma-2-2b-it.jinja", import.meta.url), "utf8");
    const metadata = Object.fromEntries(syntheticMetadata(syntheticModelConfig(arch, "tiny"), "F32").map(([k, e]) => [k, e.value]));
    expect(metadata["tokenizer.chat_template"]).toBe(template);
    const tokens = metadata["tokenizer.ggml.tokens"] as string[];
    const types = metadata["tokenizer.ggml.token_type"] as number[];
    for (const marker of ["<start_of_turn>", "<end_of_turn>"]) expect(types[tokens.indexOf(marker)], marker).toBe(TokenType.Control);
    expect(tokens[metadata["tokenizer.ggml.eos_token_id"] as number]).toBe("<end_of_turn>");
  });
});

describe("phi3 synthetic files", () => {
  it("carry Phi-3.5's template as llama.cpp keeps it, and its markers as control tokens", () => {
    const template = readFileSync(new URL("../../fixtures/chat-templates/microsoft-Phi-3.5-mini-instruct.jinja", import.meta.url), "utf8");
    const metadata = Object.fromEntries(syntheticMetadata(syntheticModelConfig("phi3", "tiny"), "F32").map(([k, e]) => [k, e.value]));
    expect(metadata["tokenizer.chat_template"]).toBe(template);
    const tokens = metadata["tokenizer.ggml.tokens"] as string[];
    const types = metadata["tokenizer.ggml.token_type"] as number[];
    for (const marker of ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "<|endoftext|>"]) {
      expect(types[tokens.indexOf(marker)], marker).toBe(TokenType.Control);
    }
    expect(tokens[metadata["tokenizer.ggml.eos_token_id"] as number]).toBe("<|endoftext|>");
  });
});
