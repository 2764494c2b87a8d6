"""Writes the held-out evaluation data:
- <data>/heldout-ids.json: each held-out document with the ids bpe.py gives it, so
  eval-gguf.ts can check that llama.cpp's `gpt-2` tokenizer agrees with ours id for id;
- test/fixtures/heldout-sample.txt: the first held-out documents (about 3 KB, joined by
  blank lines), so CI can measure perplexity without the training data, and
  test/fixtures/heldout-sample.ids.json: bpe.py's ids for that text (no BOS).

Usage: /usr/bin/python3 tools/train/heldout_ids.py [--data .cache/train] [--fixtures test/fixtures]
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bpe import Tokenizer  # noqa: E402
from corpus import read_documents  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=".cache/train")
    ap.add_argument("--fixtures", default="test/fixtures")
    ap.add_argument("--sample-bytes", type=int, default=3000)
    args = ap.parse_args()
    tok = Tokenizer.load(os.path.join(args.data, "tokenizer.json"))
    docs = read_documents(os.path.join(args.data, "heldout.txt"))
    out = [dict(text=d, ids=tok.encode(d)) for d in docs]
    with open(os.path.join(args.data, "heldout-ids.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)
    print(f"{len(out)} documents, {sum(len(o['ids']) for o in out)} tokens")

    sample = []
    for d in docs:
        if sum(len(x.encode("utf-8")) + 2 for x in sample) >= args.sample_bytes:
            break
        sample.append(d)
    text = "\n\n".join(sample) + "\n"
    os.makedirs(args.fixtures, exist_ok=True)
    with open(os.path.join(args.fixtures, "heldout-sample.txt"), "w", encoding="utf-8") as f:
        f.write(text)
    with open(os.path.join(args.fixtures, "heldout-sample.ids.json"), "w") as f:
        json.dump(tok.encode(text), f)
    print(f"fixture: {len(sample)} documents, {len(text.encode())} bytes, {len(tok.encode(text))} tokens")


if __name__ == "__main__":
    main()
