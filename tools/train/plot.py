"""Draws models/loss-curve.svg from train.py's log.csv: held-out nats per byte against
training minutes. Plain SVG text, no plotting library.

Usage: /usr/bin/python3 tools/train/plot.py [--data .cache/train] [--out models/loss-curve.svg]
"""
import argparse
import csv
import os

W, H, PAD = 480, 260, 48


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=".cache/train")
    ap.add_argument("--out", default="models/loss-curve.svg")
    args = ap.parse_args()
    with open(os.path.join(args.data, "log.csv")) as f:
        rows, seen = [], set()
        for r in csv.DictReader(f):
            # The final evaluation can repeat the last periodic one at the same step.
            if r["heldout_nats_per_byte"] and r["step"] not in seen:
                seen.add(r["step"])
                rows.append(r)
    pts = [(float(r["elapsed_s"]) / 60, float(r["heldout_nats_per_byte"])) for r in rows]
    x_max = max(p[0] for p in pts) or 1.0
    y_lo, y_hi = 1.0, 3.0

    def sx(x):
        return PAD + (W - 2 * PAD) * x / x_max

    def sy(y):
        return H - PAD - (H - 2 * PAD) * (min(max(y, y_lo), y_hi) - y_lo) / (y_hi - y_lo)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" stroke="black"/>',
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{H - PAD}" stroke="black"/>',
    ]
    for y in (1.0, 1.5, 2.0, 2.5, 3.0):
        parts.append(f'<text x="{PAD - 6}" y="{sy(y) + 4:.1f}" text-anchor="end">{y:.1f}</text>')
        parts.append(f'<line x1="{PAD}" y1="{sy(y):.1f}" x2="{W - PAD}" y2="{sy(y):.1f}" stroke="#ddd"/>')
    for i in range(5):
        x = x_max * i / 4
        parts.append(f'<text x="{sx(x):.1f}" y="{H - PAD + 16}" text-anchor="middle">{x:.0f}</text>')
    parts.append(f'<text x="{W / 2}" y="{H - 8}" text-anchor="middle">training minutes (2 shared CPU cores)</text>')
    parts.append(f'<text x="14" y="{H / 2}" transform="rotate(-90 14 {H / 2})" text-anchor="middle">held-out nats / byte</text>')
    line = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
    parts.append(f'<polyline points="{line}" fill="none" stroke="#1f6feb" stroke-width="2"/>')
    for x, y in pts:
        parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="#1f6feb"/>')
    parts.append("</svg>")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(parts) + "\n")
    print(f"wrote {args.out} ({len(pts)} points)")


if __name__ == "__main__":
    main()
