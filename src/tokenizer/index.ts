/** The tokenizer door: GGUF vocabularies, chat templates, synthetic test vocabularies. */
export {
  type DecodeOptions,
  type EncodeOptions,
  type StreamDecoder,
  type Tokenizer,
  tokenizerFromMetadata,
} from "./tokenizer.ts";
export {
  type ChatMessage,
  chatTemplateCaps,
  type ChatTemplateCaps,
  chatTemplateOf,
  type ChatTemplateSource,
  type ChatToolCall,
  renderChat,
  type RenderChatOptions,
  type TokenizerWithTemplate,
} from "./chat.ts";
export { type TokenizerMetadata, TokenType } from "./vocab.ts";
export { supportedPreTokenizers } from "./pretokenize.ts";
