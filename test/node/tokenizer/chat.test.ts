/**
 * Chat rendering with the model's template: the expected prompts are written out by
 * hand from the templates' text.
 */
import { describe, expect, it } from "vitest";
import { TokenizerError } from "../../../src/errors.ts";
import { renderChat } from "../../../src/tokenizer/chat.ts";
import { syntheticTokenizerMetadata } from "../../../src/tokenizer/synthetic.ts";
import { tokenizerFromMetadata } from "../../../src/tokenizer/tokenizer.ts";

const MESSAGES = [
  { role: "system", content: "Be brief." },
  { role: "user", content: "Hi!" },
];

function metadata(chatTemplate?: string): Record<string, unknown> {
  return Object.fromEntries(syntheticTokenizerMetadata("llama", 512, { chatTemplate }));
}

function thrown(f: () => unknown): TokenizerError {
  try {
    f();
  } catch (e) {
    if (e instanceof TokenizerError) return e;
    throw e;
  }
  throw new Error("no error thrown");
}

describe("renderChat", () => {
  it("renders the default ChatML template, with and without the generation prompt", () => {
    const chatml = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n";
    expect(renderChat(metadata(), MESSAGES)).toBe(`${chatml}<|im_start|>assistant\n`);
    expect(renderChat(metadata(), MESSAGES, { addGenerationPrompt: false })).toBe(chatml);
  });

  it("passes the model's BOS and EOS texts to the template", () => {
    const template = "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}{{ eos_token }}{% endfor %}";
    // The llama-kind synthetic vocabulary has <s> and </s> as BOS and EOS.
    expect(renderChat(metadata(template), MESSAGES)).toBe("<s>[system] Be brief.</s>[user] Hi!</s>");
    const tokenizer = tokenizerFromMetadata(metadata());
    expect(renderChat({ tokenizer, template }, MESSAGES)).toBe("<s>[system] Be brief.</s>[user] Hi!</s>");
  });

  it("renders text that the tokenizer then reads special tokens from", () => {
    const meta = metadata();
    const tokenizer = tokenizerFromMetadata(meta);
    const ids = tokenizer.encode(renderChat(meta, MESSAGES));
    const imStart = tokenizer.encode("<|im_start|>", { addSpecial: false });
    expect(imStart).toHaveLength(1);
    expect(ids.filter((id) => id === imStart[0])).toHaveLength(3);
  });

  it("refuses a model without a template with NO_CHAT_TEMPLATE", () => {
    const err = thrown(() => renderChat(metadata(""), MESSAGES));
    expect(err.code).toBe("NO_CHAT_TEMPLATE");
    expect(err.message).toMatch(/tokenizer\.chat_template/);
    const tokenizer = tokenizerFromMetadata(metadata());
    expect(thrown(() => renderChat({ tokenizer, template: undefined }, MESSAGES)).code).toBe("NO_CHAT_TEMPLATE");
  });

  it("names the problem when the template does not parse or fails while rendering", () => {
    const broken = thrown(() => renderChat(metadata("{% for m in messages %}{{ m.content }}"), MESSAGES));
    expect(broken.code).toBe("CHAT_TEMPLATE_ERROR");
    expect(broken.message).toMatch(/does not parse/);
    const raising = thrown(() =>
      renderChat(metadata("{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"), MESSAGES),
    );
    expect(raising.code).toBe("CHAT_TEMPLATE_ERROR");
    expect(raising.message).toMatch(/failed to render: .*System role not supported/);
  });
});
