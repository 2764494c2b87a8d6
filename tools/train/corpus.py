"""Builds the training corpus for the embedded model from Debian's `fortunes` package.

Each fortune-cookie file is a list of documents separated by lines holding only `%`.
We keep every collection in /usr/share/games/fortunes (the `.u8` names are symlinks to the
same files and the `.dat` files are binary indexes, so both are skipped; the offensive
collection lives in an `off/` folder that we never read), strip terminal overstriking
(`_\\bX` underlines, `X\\bX` bold) and hold out 5% of the documents with a fixed seed.

Usage: /usr/bin/python3 tools/train/corpus.py [--out .cache/train]
Writes train.txt, heldout.txt (documents joined by "\\n%\\n") and corpus.json (counts).
"""
import argparse
import json
import os
import random
import re

FORTUNE_DIR = "/usr/share/games/fortunes"
HOLDOUT_FRACTION = 0.05
SEED = 20261126
SEPARATOR = "\n%\n"
# One character followed by a backspace: the old terminal way to underline or embolden.
OVERSTRIKE = re.compile(r".\x08", re.DOTALL)


def collection_files(root):
    """Plain-text collections: regular files without an extension (no .dat, no .u8 links)."""
    names = []
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if "." in name or os.path.islink(path) or not os.path.isfile(path):
            continue
        names.append(name)
    return names


def split_documents(text):
    """Splits a fortune file at lines that are exactly `%`; drops empty documents."""
    docs, lines = [], []
    for line in text.split("\n"):
        if line.strip() == "%":
            docs.append("\n".join(lines))
            lines = []
        else:
            lines.append(line)
    docs.append("\n".join(lines))
    cleaned = []
    for doc in docs:
        doc = OVERSTRIKE.sub("", doc).replace("\r", "")
        doc = "\n".join(l.rstrip() for l in doc.split("\n")).strip("\n")
        if doc.strip():
            cleaned.append(doc)
    return cleaned


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=".cache/train")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    seen, docs, per_file = set(), [], {}
    for name in collection_files(FORTUNE_DIR):
        with open(os.path.join(FORTUNE_DIR, name), "rb") as f:
            text = f.read().decode("utf-8", errors="replace")
        file_docs = split_documents(text)
        kept = 0
        for doc in file_docs:
            # Exact duplicates across collections would leak into the held-out set.
            if doc in seen:
                continue
            seen.add(doc)
            docs.append(doc)
            kept += 1
        per_file[name] = kept

    rng = random.Random(SEED)
    order = list(range(len(docs)))
    rng.shuffle(order)
    n_held = round(len(docs) * HOLDOUT_FRACTION)
    held_ids = set(order[:n_held])
    train = [d for i, d in enumerate(docs) if i not in held_ids]
    held = [d for i, d in enumerate(docs) if i in held_ids]

    for fname, part in (("train.txt", train), ("heldout.txt", held)):
        with open(os.path.join(args.out, fname), "w", encoding="utf-8") as f:
            f.write(SEPARATOR.join(part))
    stats = {
        "source": FORTUNE_DIR,
        "seed": SEED,
        "holdout_fraction": HOLDOUT_FRACTION,
        "documents": len(docs),
        "train_documents": len(train),
        "heldout_documents": len(held),
        "train_bytes": sum(len(d.encode("utf-8")) for d in train),
        "heldout_bytes": sum(len(d.encode("utf-8")) for d in held),
        "documents_per_file": per_file,
    }
    with open(os.path.join(args.out, "corpus.json"), "w") as f:
        json.dump(stats, f, indent=1)
    print(json.dumps({k: v for k, v in stats.items() if k != "documents_per_file"}))


def read_documents(path):
    """Reads a train.txt / heldout.txt written by this script back into documents."""
    with open(path, encoding="utf-8") as f:
        return f.read().split(SEPARATOR)


if __name__ == "__main__":
    main()
