"""Writes heldout-ids.json: each held-out document with the ids bpe.py gives it, so
eval_gguf.ts can check that llama.cpp's `gpt2` tokenizer agrees with ours id for id.

Usage: /usr/bin/python3 tools/train/heldout_ids.py [--data .cache/train]
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
    args = ap.parse_args()
    tok = Tokenizer.load(os.path.join(args.data, "tokenizer.json"))
    docs = read_documents(os.path.join(args.data, "heldout.txt"))
    out = [dict(text=d, ids=tok.encode(d)) for d in docs]
    with open(os.path.join(args.data, "heldout-ids.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)
    print(f"{len(out)} documents, {sum(len(o['ids']) for o in out)} tokens")


if __name__ == "__main__":
    main()
