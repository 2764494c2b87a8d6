/**
 * A model's vocabulary as the grammar matcher sees it: the bytes each token stands for,
 * laid out as a trie in depth-first order so that a token mask is one linear walk that
 * skips whole subtrees the grammar rules out.
 */

/** The vocabulary facts a grammar needs; build it with {@link grammarVocabulary}. */
export interface GrammarVocabulary {
  readonly size: number;
  /**
   * The bytes of each token, or `undefined` for a token that never appears in constrained
   * text (control tokens, empty pieces); those are only ever allowed as end tokens.
   */
  readonly tokenBytes: readonly (Uint8Array | undefined)[];
  /** End-of-generation ids: allowed exactly where the grammar may end. */
  readonly eogIds: readonly number[];
}

/** What {@link grammarVocabulary} reads from a tokenizer (src/tokenizer's `Tokenizer`). */
export interface VocabularySource {
  readonly vocabSize: number;
  readonly eogIds: ReadonlySet<number>;
  pieceBytes(id: number): Uint8Array;
  decode(ids: readonly number[], options?: { readonly skipSpecial?: boolean }): string;
}

const vocabularies = new WeakMap<VocabularySource, GrammarVocabulary>();

/**
 * The grammar's view of a tokenizer's vocabulary, computed once per tokenizer. A token
 * that decodes to nothing with special tokens skipped (a control token, an empty piece)
 * is left out of text; every other token contributes its raw bytes (a lone byte token of
 * a split UTF-8 character included).
 */
export function grammarVocabulary(tokenizer: VocabularySource): GrammarVocabulary {
  let vocab = vocabularies.get(tokenizer);
  if (vocab === undefined) {
    const tokenBytes: (Uint8Array | undefined)[] = [];
    for (let id = 0; id < tokenizer.vocabSize; id++) {
      const isText = !tokenizer.eogIds.has(id) && tokenizer.decode([id], { skipSpecial: true }) !== "";
      const bytes = isText ? tokenizer.pieceBytes(id) : undefined;
      tokenBytes.push(bytes !== undefined && bytes.length > 0 ? bytes : undefined);
    }
    vocab = { size: tokenizer.vocabSize, tokenBytes, eogIds: [...tokenizer.eogIds] };
    vocabularies.set(tokenizer, vocab);
  }
  return vocab;
}

/**
 * The tokens' byte strings as a trie in depth-first order: node i (i ≥ 1) is reached by
 * byte `byte[i]` from its parent at depth `depth[i] - 1`, its subtree ends before
 * `subtreeEnd[i]`, and the tokens spelled exactly by the path to it are
 * `tokens[tokenStart[i] .. tokenStart[i + 1])`.
 */
export interface TokenTrie {
  readonly nodes: number;
  readonly byte: Uint8Array;
  readonly depth: Uint16Array;
  readonly subtreeEnd: Int32Array;
  readonly tokenStart: Int32Array;
  readonly tokens: Int32Array;
  readonly maxDepth: number;
}

const tries = new WeakMap<GrammarVocabulary, TokenTrie>();

/** The trie of a vocabulary, built on first use and kept with it. */
export function tokenTrie(vocab: GrammarVocabulary): TokenTrie {
  let trie = tries.get(vocab);
  if (trie === undefined) {
    trie = buildTrie(vocab);
    tries.set(vocab, trie);
  }
  return trie;
}

interface BuildNode {
  readonly children: Map<number, BuildNode>;
  readonly tokens: number[];
}

function buildTrie(vocab: GrammarVocabulary): TokenTrie {
  const root: BuildNode = { children: new Map(), tokens: [] };
  let count = 1;
  vocab.tokenBytes.forEach((bytes, id) => {
    if (bytes === undefined) return;
    let node = root;
    for (const b of bytes) {
      let child = node.children.get(b);
      if (child === undefined) {
        child = { children: new Map(), tokens: [] };
        node.children.set(b, child);
        count++;
      }
      node = child;
    }
    node.tokens.push(id);
  });
  const byte = new Uint8Array(count);
  const depth = new Uint16Array(count);
  const subtreeEnd = new Int32Array(count);
  const tokenStart = new Int32Array(count + 1);
  const tokens: number[] = [];
  let next = 0;
  let maxDepth = 0;
  // Iterative depth-first layout: long tokens would overflow a recursive walk's stack.
  const work: { node: BuildNode; b: number; d: number; index: number; done: boolean }[] = [
    { node: root, b: 0, d: 0, index: -1, done: false },
  ];
  while (work.length > 0) {
    const top = work.pop()!;
    if (top.done) {
      subtreeEnd[top.index] = next;
      continue;
    }
    const i = next++;
    byte[i] = top.b;
    depth[i] = top.d;
    maxDepth = Math.max(maxDepth, top.d);
    tokenStart[i] = tokens.length;
    tokens.push(...top.node.tokens);
    work.push({ ...top, index: i, done: true });
    const children = [...top.node.children].sort((a, b) => b[0] - a[0]);
    for (const [b, child] of children) work.push({ node: child, b, d: top.d + 1, index: -1, done: false });
  }
  tokenStart[count] = tokens.length;
  return { nodes: count, byte, depth, subtreeEnd, tokenStart, tokens: Int32Array.from(tokens), maxDepth };
}
