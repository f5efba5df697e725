#!/usr/bin/env python3
"""Where and which way methods miss in over-exposed pixels: per window of frames, the over-exposed
PU21-PSNR of each method and its signed log error in the clipped channels.

    python scripts/oe_bias.py [--data data/devset] [--sequences roadtrip-vp92-10bit] [--window 12] \
        [--method 'NAME:{"mode":"icam"}' ...]

Default methods: "single frame" (ICAM without references) and "ICAM only", as scripts/evaluate.py
names them. For every window of --window frames and every method it prints, over the pixels whose
LDR max channel is >= 0.95 (evaluate.py's over-exposed mask): PU21-PSNR, and over the channels that
are themselves clipped there (LDR code >= 0.95) the mean, 75th and 95th percentile of
log(pred) - log(truth), per channel. Positive = brighter than the truth (overshoot).
Why: evaluate.py says how much a method loses; this says whether it over- or undershoots and in which
channel, e.g. whether references push recovered highlights up or down.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

DEFAULT = ['single frame:{"mode":"icam","num_refs":0}', 'ICAM only:{"mode":"icam"}']
CHANNELS = "RGB"


def channel_bias(pred: np.ndarray, gt: np.ndarray, ldr: np.ndarray, oe: np.ndarray, threshold: float = 0.95):
    """{channel: (share of OE pixels where it is clipped, mean, p75, p95 of the log error)} over OE pixels."""
    err = np.log(np.maximum(pred, 1e-4)) - np.log(np.maximum(gt, 1e-4))
    out = {}
    for c, name in enumerate(CHANNELS):
        m = oe & (ldr[..., c] >= threshold * 255)
        if not m.any():
            continue
        e = err[..., c][m]
        out[name] = (float(m.sum() / max(oe.sum(), 1)), float(e.mean()), *np.percentile(e, [75, 95]).tolist())
    return out


def main(argv=None) -> int:
    import evaluate as E
    from vsvitm.training import metrics as M
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT / "data" / "devset"))
    ap.add_argument("--sequences", default=None, help="comma-separated names (default: every .npz)")
    ap.add_argument("--window", type=int, default=12)
    ap.add_argument("--method", action="append", default=None, help="NAME:KWARGS_JSON, as evaluate.py")
    a = ap.parse_args(argv)
    if a.window < 1:
        ap.error(f"--window must be at least 1 frame, got {a.window}")
    methods = [E.parse_method(s) for s in (a.method or DEFAULT)]
    data = Path(a.data)
    paths = sorted(data.glob("*.npz")) if data.is_dir() else [data]
    if a.sequences:
        want = set(a.sequences.split(","))
        paths = [p for p in paths if p.stem in want]
    if not paths:
        raise SystemExit(f"no sequences in {data} (name them with --sequences, files <name>.npz)")
    for p in paths:
        seq = E.load_sequence(p)
        ldr, gt = seq["ldr"], seq["hdr"].astype(np.float32)
        oe = M.overexposed_mask(ldr)
        preds = {name: E.run_method(ldr, kw)[0] for name, kw in methods}
        print(f"\n### {p.stem} ({len(ldr)} frames)\n")
        print("| frames | OE % | method | OE PU21-PSNR | clipped channel: share of OE px, mean / p75 / p95 log error |")
        print("|---|---:|---|---:|---|")
        spans = [(s, min(s + a.window, len(ldr))) for s in range(0, len(ldr), a.window)]
        spans += [(0, len(ldr))] if len(spans) > 1 else []
        for s, e in spans:
            m = oe[s:e]
            if not m.any():
                continue
            for name, _ in methods:
                pr = preds[name][s:e]
                bias = channel_bias(pr, gt[s:e], ldr[s:e], m)
                cells = ", ".join(f"{c} {v[0]:.0%}: {v[1]:+.3f} / {v[2]:+.3f} / {v[3]:+.3f}" for c, v in bias.items())
                span = "all" if (s, e) == (0, len(ldr)) and len(spans) > 1 else f"{s}-{e - 1}"
                print(f"| {span} | {100 * m.mean():.1f} | {name} | {M.pu21_psnr(pr, gt[s:e], m):.2f} | {cells} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
