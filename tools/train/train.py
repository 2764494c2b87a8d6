"""Trains the embedded default model: a tiny llama on the fortunes corpus, on the CPU.

The module layout maps 1:1 onto llama.cpp's `llama` graph so export is a rename:
RMSNorm (weight only), no biases, grouped-query attention, SwiGLU, tied embeddings, and
RoPE in llama.cpp's NORMAL layout, which rotates ADJACENT pairs (x[2i], x[2i+1]) by
pos * base^(-2i/head_dim). (Hugging Face llama rotates halves instead, which is why its
converter permutes Q/K; we need no permutation.)

Usage (after corpus.py and bpe.py):
  nice -n 10 /usr/bin/python3 tools/train/train.py --minutes 45 --eval-minutes 9
  /usr/bin/python3 tools/train/train.py --steps 255    # same schedule shape, fixed step count
  /usr/bin/python3 tools/train/train.py --init .cache/train/ckpt_best.pt --minutes 30   # train on
  /usr/bin/python3 tools/train/train.py --export-only   # manifest + .bin from the best checkpoint
Without --steps the cosine schedule follows the wall clock (the CPU is shared, so the step
rate is unknown in advance); the run can be stopped at any time and --export-only used on
the last checkpoint written by an evaluation.
Outputs in --data (default .cache/train): log.csv, ckpt_best.pt, ckpt_last.pt, run.json,
export/manifest.json + export/weights.bin, samples.json.
"""
import argparse
import csv
import json
import math
import os
import random
import struct
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bpe import Tokenizer  # noqa: E402
from corpus import read_documents  # noqa: E402

CONFIG = dict(
    vocab_size=1024,
    n_embd=256,
    n_layer=4,
    n_head=8,
    n_head_kv=2,
    n_ff=512,
    context_length=256,
    rms_eps=1e-5,
    rope_base=10000.0,
)
SEED = 1234
CHAT_FRACTION = 0.2
USER_LINES = [
    "Tell me a fortune.",
    "Give me a fortune cookie.",
    "What does my fortune say?",
    "Say something wise.",
    "Tell me something funny.",
    "Share a quote.",
]
SYSTEM_LINES = ["You are a fortune cookie.", "You are a helpful assistant."]


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(cfg, n_pos):
    """cos/sin of shape [n_pos, head_dim/2]: angle pos * base^(-2i/head_dim) for pair i."""
    head_dim = cfg["n_embd"] // cfg["n_head"]
    i = torch.arange(head_dim // 2, dtype=torch.float64)
    inv = cfg["rope_base"] ** (-2.0 * i / head_dim)
    ang = torch.arange(n_pos, dtype=torch.float64)[:, None] * inv[None, :]
    return torch.cos(ang).float(), torch.sin(ang).float()


def apply_rope(x, cos, sin):
    """x: [B, H, T, D]; rotates adjacent pairs (x[2i], x[2i+1]) (llama.cpp NORMAL mode)."""
    x0, x1 = x[..., 0::2], x[..., 1::2]
    r0 = x0 * cos - x1 * sin
    r1 = x0 * sin + x1 * cos
    return torch.stack((r0, r1), dim=-1).flatten(-2)


class Block(nn.Module):
    def __init__(self, cfg, dropout):
        super().__init__()
        d, hd = cfg["n_embd"], cfg["n_embd"] // cfg["n_head"]
        self.n_head, self.n_head_kv, self.head_dim = cfg["n_head"], cfg["n_head_kv"], hd
        self.attn_norm = RMSNorm(d, cfg["rms_eps"])
        self.attn_q = nn.Linear(d, cfg["n_head"] * hd, bias=False)
        self.attn_k = nn.Linear(d, cfg["n_head_kv"] * hd, bias=False)
        self.attn_v = nn.Linear(d, cfg["n_head_kv"] * hd, bias=False)
        self.attn_output = nn.Linear(cfg["n_head"] * hd, d, bias=False)
        self.ffn_norm = RMSNorm(d, cfg["rms_eps"])
        self.ffn_gate = nn.Linear(d, cfg["n_ff"], bias=False)
        self.ffn_up = nn.Linear(d, cfg["n_ff"], bias=False)
        self.ffn_down = nn.Linear(cfg["n_ff"], d, bias=False)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        h = self.attn_norm(x)
        q = self.attn_q(h).view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        k = self.attn_k(h).view(B, T, self.n_head_kv, self.head_dim).transpose(1, 2)
        v = self.attn_v(h).view(B, T, self.n_head_kv, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        # Query head h reads KV head h // group, as llama.cpp's GQA broadcast does.
        group = self.n_head // self.n_head_kv
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim)) + mask
        y = torch.softmax(att, dim=-1) @ v
        y = y.transpose(1, 2).reshape(B, T, -1)
        x = x + self.drop(self.attn_output(y))
        h = self.ffn_norm(x)
        x = x + self.drop(self.ffn_down(F.silu(self.ffn_gate(h)) * self.ffn_up(h)))
        return x


class Llama(nn.Module):
    def __init__(self, cfg, dropout=0.0):
        super().__init__()
        self.cfg = cfg
        self.token_embd = nn.Embedding(cfg["vocab_size"], cfg["n_embd"])
        self.blocks = nn.ModuleList(Block(cfg, dropout) for _ in range(cfg["n_layer"]))
        self.output_norm = RMSNorm(cfg["n_embd"], cfg["rms_eps"])
        cos, sin = rope_tables(cfg, cfg["context_length"])
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02
                if name.endswith("attn_output.weight") or name.endswith("ffn_down.weight"):
                    std = 0.02 / math.sqrt(2 * cfg["n_layer"])
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx):
        T = idx.shape[1]
        x = self.token_embd(idx)
        mask = torch.full((T, T), float("-inf")).triu(1)
        cos, sin = self.cos[:T], self.sin[:T]
        for blk in self.blocks:
            x = blk(x, cos, sin, mask)
        # Tied output: llama.cpp uses token_embd.weight when output.weight is absent.
        return self.output_norm(x) @ self.token_embd.weight.t()


def encode_document(tok, text, rng):
    """Plain `<|bos|>text<|endoftext|>`, or (CHAT_FRACTION of the time) a chat turn."""
    sp = tok.specials
    if rng.random() < CHAT_FRACTION:
        ids = [sp["<|bos|>"]]
        if rng.random() < 0.25:
            ids += [sp["<|system|>"]] + tok.encode("\n" + rng.choice(SYSTEM_LINES)) + [sp["<|endoftext|>"]]
        ids += [sp["<|user|>"]] + tok.encode("\n" + rng.choice(USER_LINES)) + [sp["<|endoftext|>"]]
        ids += [sp["<|assistant|>"]] + tok.encode("\n" + text) + [sp["<|endoftext|>"]]
        return ids
    return [sp["<|bos|>"]] + tok.encode(text) + [sp["<|endoftext|>"]]


def heldout_batches(tok, docs, ctx, batch):
    """Each held-out document alone: BOS + text, chunked so every chunk starts with BOS.
    Yields (inputs, targets, target-mask) padded per batch; EOS is not scored."""
    bos = tok.specials["<|bos|>"]
    chunks = []
    for d in docs:
        ids = tok.encode(d)
        for s in range(0, len(ids), ctx - 1):
            chunks.append([bos] + ids[s : s + ctx - 1])
    chunks.sort(key=len)
    for i in range(0, len(chunks), batch):
        part = chunks[i : i + batch]
        T = max(len(c) for c in part) - 1
        x = torch.zeros((len(part), T), dtype=torch.long)
        y = torch.zeros((len(part), T), dtype=torch.long)
        m = torch.zeros((len(part), T), dtype=torch.bool)
        for j, c in enumerate(part):
            n = len(c) - 1
            x[j, :n] = torch.tensor(c[:-1])
            y[j, :n] = torch.tensor(c[1:])
            m[j, :n] = True
        yield x, y, m


@torch.no_grad()
def evaluate(model, batches, n_bytes):
    """Held-out nats per UTF-8 byte: total token NLL / total text bytes."""
    model.eval()
    total = 0.0
    for x, y, m in batches:
        logits = model(x)
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none")
        total += nll[m.reshape(-1)].double().sum().item()
    model.train()
    return total / n_bytes


def export_weights(model, out_dir, extra):
    """Writes manifest.json + weights.bin (float32 LE) with GGUF names and ne-order shapes."""
    os.makedirs(out_dir, exist_ok=True)
    sd = model.state_dict()
    tensors, offset = [], 0
    names = [("token_embd.weight", "token_embd.weight")]
    for i in range(model.cfg["n_layer"]):
        for part in ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"]:
            names.append((f"blk.{i}.{part}.weight", f"blocks.{i}.{part}.weight"))
    names.append(("output_norm.weight", "output_norm.weight"))
    with open(os.path.join(out_dir, "weights.bin"), "wb") as f:
        for gguf_name, torch_name in names:
            t = sd[torch_name].detach().float().contiguous()
            data = t.numpy().astype("<f4").tobytes()
            # torch [out, in] row-major == GGUF ne [in, out]: reverse the dims, keep the bytes.
            tensors.append(dict(name=gguf_name, ne=list(reversed(t.shape)), offset=offset, count=t.numel()))
            f.write(data)
            offset += len(data)
    manifest = dict(config=model.cfg, tensors=tensors, weights="weights.bin", dtype="f32le", **extra)
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


@torch.no_grad()
def greedy(model, tok, prompt_ids, n):
    model.eval()
    ids = list(prompt_ids)
    eot = tok.specials["<|endoftext|>"]
    out = []
    for _ in range(n):
        logits = model(torch.tensor([ids[-model.cfg["context_length"] :]]))
        nxt = int(logits[0, -1].argmax())
        if nxt == eot:
            break
        ids.append(nxt)
        out.append(nxt)
    model.train()
    return tok.decode(out)


SAMPLE_PROMPTS = ["The meaning of life is", "A computer", "Love is", "Never"]


def write_samples(model, tok, path):
    bos = tok.specials["<|bos|>"]
    samples = [dict(prompt=p, greedy=greedy(model, tok, [bos] + tok.encode(p), 48)) for p in SAMPLE_PROMPTS]
    sp = tok.specials
    chat = [bos, sp["<|user|>"]] + tok.encode("\nTell me a fortune.") + [sp["<|endoftext|>"], sp["<|assistant|>"]] + tok.encode("\n")
    samples.append(dict(prompt="<chat> Tell me a fortune.", greedy=greedy(model, tok, chat, 48)))
    with open(path, "w") as f:
        json.dump(samples, f, indent=1)
    return samples


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=".cache/train")
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--steps", type=int, default=0, help="fix the step count (else the schedule follows the wall clock)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--eval-minutes", type=float, default=5.0, help="wall-clock minutes between evals")
    ap.add_argument("--export-only", action="store_true")
    ap.add_argument("--init", default="", help="start from this checkpoint's weights (fresh optimizer and schedule)")
    args = ap.parse_args()

    torch.set_num_threads(2)
    torch.manual_seed(SEED)
    rng = random.Random(SEED)
    tok = Tokenizer.load(os.path.join(args.data, "tokenizer.json"))
    assert tok.vocab_size == CONFIG["vocab_size"], tok.vocab_size
    model = Llama(CONFIG, args.dropout)
    n_params = sum(p.numel() for p in model.parameters())
    export_dir = os.path.join(args.data, "export")

    if args.export_only:
        ck = torch.load(os.path.join(args.data, "ckpt_best.pt"))
        model.load_state_dict(ck["model"])
        export_weights(model, export_dir, dict(step=ck["step"], heldout_nats_per_byte=ck["heldout"], params=n_params))
        print(write_samples(model, tok, os.path.join(args.data, "samples.json")))
        return

    train_docs = read_documents(os.path.join(args.data, "train.txt"))
    held_docs = read_documents(os.path.join(args.data, "heldout.txt"))
    rng.shuffle(train_docs)
    stream = []
    for d in train_docs:
        stream.extend(encode_document(tok, d, rng))
    stream = torch.tensor(stream, dtype=torch.long)
    ctx = CONFIG["context_length"]
    if args.init:
        model.load_state_dict(torch.load(args.init)["model"])
    held = list(heldout_batches(tok, held_docs, ctx, 32))
    held_bytes = sum(len(d.encode("utf-8")) for d in held_docs)
    print(f"params {n_params}, train tokens {len(stream)}, heldout bytes {held_bytes}", flush=True)

    decay = [p for p in model.parameters() if p.dim() == 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [dict(params=decay, weight_decay=0.1), dict(params=no_decay, weight_decay=0.0)],
        lr=args.lr, betas=(0.9, 0.95),
    )
    gen = torch.Generator().manual_seed(SEED)

    def batch():
        starts = torch.randint(0, len(stream) - ctx - 1, (args.batch,), generator=gen)
        w = torch.stack([stream[s : s + ctx + 1] for s in starts.tolist()])
        return w[:, :-1], w[:, 1:]

    warmup = 30
    min_ratio = 0.1
    budget = args.minutes * 60

    def progress(step, elapsed):
        # With --steps the schedule is a function of the step (reproducible); without it,
        # of the wall clock, because the CPU is shared and the step rate is unknowable.
        if args.steps:
            return step / args.steps
        return elapsed / budget

    def lr_at(step, elapsed):
        if step < warmup:
            return args.lr * (step + 1) / warmup
        p = min(1.0, progress(step, elapsed))
        return args.lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * p)))

    log_path = os.path.join(args.data, "log.csv")
    logf = open(log_path, "w", newline="")
    log = csv.writer(logf)
    log.writerow(["step", "elapsed_s", "lr", "train_nats_per_token", "heldout_nats_per_byte", "heldout_bits_per_byte"])
    t0 = time.time()
    next_eval = args.eval_minutes * 60
    best = float("inf")
    run = dict(seed=SEED, init=args.init or None, params=n_params, batch=args.batch, lr=args.lr, dropout=args.dropout,
               context=ctx, train_tokens=len(stream), heldout_bytes=held_bytes,
               torch=torch.__version__, threads=torch.get_num_threads())
    acc, acc_n, step = 0.0, 0, 0
    last_eval_step = -1

    def do_eval():
        nonlocal best, last_eval_step
        last_eval_step = step
        h = evaluate(model, held, held_bytes)
        el = time.time() - t0
        log.writerow([step, f"{el:.1f}", f"{lr_at(step, el):.6g}", f"{acc / max(acc_n, 1):.4f}", f"{h:.4f}", f"{h / math.log(2):.4f}"])
        logf.flush()
        ck = dict(model=model.state_dict(), step=step, heldout=h, elapsed_s=el)
        torch.save(ck, os.path.join(args.data, "ckpt_last.pt"))
        if h < best:
            best = h
            torch.save(ck, os.path.join(args.data, "ckpt_best.pt"))
        run.update(steps=step, elapsed_s=el, best_heldout_nats_per_byte=best, best_step=ck["step"] if h <= best else run.get("best_step"))
        with open(os.path.join(args.data, "run.json"), "w") as f:
            json.dump(run, f, indent=1)
        print(f"step {step} {el / 60:.1f} min heldout {h:.4f} nats/byte ({h / math.log(2):.4f} bits/byte)", flush=True)

    while (step < args.steps) if args.steps else (time.time() - t0 < budget):
        x, y = batch()
        lr = lr_at(step, time.time() - t0)
        for g in opt.param_groups:
            g["lr"] = lr
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        acc += loss.item()
        acc_n += 1
        if step % 10 == 0:
            print(f"step {step} loss {acc / acc_n:.4f} lr {lr:.2e} {time.time() - t0:.0f}s", flush=True)
        if time.time() - t0 >= next_eval:
            do_eval()
            acc, acc_n = 0.0, 0
            next_eval += args.eval_minutes * 60
    if last_eval_step != step:
        do_eval()
    logf.close()
    ck = torch.load(os.path.join(args.data, "ckpt_best.pt"))
    model.load_state_dict(ck["model"])
    export_weights(model, export_dir, dict(step=ck["step"], heldout_nats_per_byte=ck["heldout"], params=n_params))
    print(write_samples(model, tok, os.path.join(args.data, "samples.json")), flush=True)
    print("done", flush=True)


if __name__ == "__main__":
    main()
