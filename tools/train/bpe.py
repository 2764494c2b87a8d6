"""Byte-level BPE in the GPT-2 style, trained on the fortunes corpus.

The vocabulary is laid out so llama.cpp's `gpt2` tokenizer (`tokenizer.ggml.pre = "gpt2"`)
splits and merges text exactly as we do here:
- text is first split with the GPT-2 pre-tokenizer regex below;
- each piece is turned into bytes, each byte shown as one GPT-2 `bytes_to_unicode` character;
- merges are applied lowest rank first, leftmost first.
Ids 0..255 are the single bytes (id == byte value), then one id per learned merge, then
the special (CONTROL) tokens at the end.

Usage: /usr/bin/python3 tools/train/bpe.py [--data .cache/train] [--vocab 1024]
Writes tokenizer.json into the data folder.
"""
import argparse
import collections
import json
import os
import time

import regex

GPT2_PATTERN = regex.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
)
SPECIAL_TOKENS = ["<|bos|>", "<|endoftext|>", "<|user|>", "<|assistant|>", "<|system|>"]
TOKEN_TYPE_NORMAL = 1
TOKEN_TYPE_CONTROL = 3


def bytes_to_unicode():
    """GPT-2's reversible map from bytes to printable characters (no spaces or controls)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(printable, chars)}


BYTE_CHAR = bytes_to_unicode()


class Tokenizer:
    """A trained vocabulary: token byte strings, merge ranks and special ids."""

    def __init__(self, token_bytes, merges, specials):
        self.token_bytes = token_bytes  # list[bytes] for ids 0..n_normal-1
        self.merges = merges  # list[(left_id, right_id, merged_id)] in rank order
        self.rank = {(a, b): (r, m) for r, (a, b, m) in enumerate(merges)}
        self.specials = specials  # name -> id
        self.cache = {}

    @property
    def vocab_size(self):
        return len(self.token_bytes) + len(self.specials)

    def encode_piece(self, piece):
        """Merges one pre-token, always taking the lowest-ranked adjacent pair (leftmost on ties)."""
        hit = self.cache.get(piece)
        if hit is not None:
            return hit
        ids = list(piece.encode("utf-8"))
        while len(ids) > 1:
            best = None
            for i in range(len(ids) - 1):
                r = self.rank.get((ids[i], ids[i + 1]))
                if r is not None and (best is None or r[0] < best[0]):
                    best = (r[0], r[1], i)
            if best is None:
                break
            _, merged, i = best
            ids[i : i + 2] = [merged]
        self.cache[piece] = ids
        return ids

    def encode(self, text):
        """Ids of plain text (special-token strings inside `text` are NOT recognised)."""
        out = []
        for piece in GPT2_PATTERN.findall(text):
            out.extend(self.encode_piece(piece))
        return out

    def decode(self, ids):
        parts = []
        names = {v: k for k, v in self.specials.items()}
        for i in ids:
            parts.append(names[i].encode() if i in names else self.token_bytes[i])
        return b"".join(parts).decode("utf-8", errors="replace")

    def gguf_vocab(self):
        """Token strings, token types and merge strings as GGUF stores them."""
        tokens = ["".join(BYTE_CHAR[b] for b in t) for t in self.token_bytes]
        types = [TOKEN_TYPE_NORMAL] * len(tokens)
        for name in sorted(self.specials, key=self.specials.get):
            tokens.append(name)
            types.append(TOKEN_TYPE_CONTROL)
        merges = [f"{tokens[a]} {tokens[b]}" for a, b, _ in self.merges]
        return tokens, types, merges

    def save(self, path):
        tokens, types, merges = self.gguf_vocab()
        with open(path, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "pre": "gpt2",
                    "pattern": GPT2_PATTERN.pattern,
                    "tokens": tokens,
                    "token_type": types,
                    "merges": merges,
                    "merge_ids": [list(m) for m in self.merges],
                    "token_bytes_hex": [t.hex() for t in self.token_bytes],
                    "specials": self.specials,
                },
                f,
                ensure_ascii=False,
            )

    @staticmethod
    def load(path):
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
        token_bytes = [bytes.fromhex(h) for h in d["token_bytes_hex"]]
        merges = [tuple(m) for m in d["merge_ids"]]
        return Tokenizer(token_bytes, merges, d["specials"])


def train(text, vocab_size):
    """Learns merges until 256 bytes + new tokens + specials == vocab_size."""
    word_freq = collections.Counter(GPT2_PATTERN.findall(text))
    words = [list(w.encode("utf-8")) for w in word_freq]
    freqs = list(word_freq.values())
    token_bytes = [bytes([b]) for b in range(256)]
    index = {t: i for i, t in enumerate(token_bytes)}
    merges = []

    pair_count = collections.Counter()
    pair_words = collections.defaultdict(set)
    for wi, w in enumerate(words):
        for a, b in zip(w, w[1:]):
            pair_count[(a, b)] += freqs[wi]
            pair_words[(a, b)].add(wi)

    target = vocab_size - len(SPECIAL_TOKENS)
    while len(token_bytes) < target and pair_count:
        # Highest count; ties go to the smallest ids so the result is deterministic.
        pair = max(pair_count, key=lambda p: (pair_count[p], -p[0], -p[1]))
        if pair_count[pair] < 2:
            break
        a, b = pair
        merged_bytes = token_bytes[a] + token_bytes[b]
        m = index.get(merged_bytes)
        if m is None:
            m = len(token_bytes)
            token_bytes.append(merged_bytes)
            index[merged_bytes] = m
        merges.append((a, b, m))
        for wi in list(pair_words[pair]):
            w, f = words[wi], freqs[wi]
            for p in zip(w, w[1:]):
                pair_count[p] -= f
                if pair_count[p] <= 0:
                    del pair_count[p]
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(m)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            words[wi] = out
            for p in zip(out, out[1:]):
                pair_count[p] += f
                pair_words[p].add(wi)
        pair_words.pop(pair, None)
    specials = {name: len(token_bytes) + i for i, name in enumerate(SPECIAL_TOKENS)}
    return Tokenizer(token_bytes, merges, specials)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=".cache/train")
    parser.add_argument("--vocab", type=int, default=1024)
    args = parser.parse_args()
    t0 = time.time()
    with open(os.path.join(args.data, "train.txt"), encoding="utf-8") as f:
        text = f.read()
    tok = train(text, args.vocab)
    tok.save(os.path.join(args.data, "tokenizer.json"))
    n = len(tok.encode(text))
    print(
        f"vocab {tok.vocab_size}, merges {len(tok.merges)}, train tokens {n}, "
        f"bytes/token {len(text.encode()) / n:.2f}, {time.time() - t0:.1f} s"
    )


if __name__ == "__main__":
    main()
