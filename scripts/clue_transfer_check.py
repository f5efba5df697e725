#!/usr/bin/env python3
"""ICAM's clue transfer (stop 36) over a grid of its three settings, with the torch ICAM.

    python scripts/clue_transfer_check.py [--data data/valset] [--icam runs/soup_s33_S4/icam.pt] [--every 3]
        [--w0 0.125,0.25,0.5] [--e0 1.0,1.05,1.15] [--s0 0] [--sequences a,b] [--num-refs 4] [--out FILE.md]

For every --every-th frame of each sequence it runs the torch ICAM as the plugin runs it in "icam" mode: the
plugin's references (k +- 15 i, i <= --num-refs, inside the shot: ITM's thumbnail cut rule), pre-flows started
from a feature homography (the shipped ICAM's), nearest first. From the one final state it decodes Y without the
transfer, and with ICAM.transfer at each (w0, e0, s0) of the grid (the same function the exported icam_decode
runs; s0 = 0: no spread gate. Since R3 of stop 36 the transfer's mean and weight count only samples that land
inside the references, so stop 36's R1 grid, which used the clue path's own sums, is not reproduced exactly). Also the key alone (no references). Prints the over-exposed PU21-PSNR per
sequence (evaluate.py's mask and scale, frames pooled) and the mean, as a Markdown table.
Why: stop 36 found the clue path's own weighted mean of the references' radiance unused by the decoder on a
panning still; this picks the transfer's settings on the validation set before the plugin is run with them.
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from ref_push_check import Check  # noqa: E402

from vsvitm.prep import net_input  # noqa: E402
from vsvitm.training import metrics as M  # noqa: E402
from vsvitm.training.nets_common import from_log, input_linear  # noqa: E402


def floats(s: str) -> list[float]:
    return [float(x) for x in s.split(",") if x]


class Pooled:
    """Over-exposed PU21 squared error summed over frames, per method (evaluate.py pools frames into one MSE)."""

    def __init__(self):
        self.sse, self.n = {}, 0

    def add(self, name: str, pred: np.ndarray, pu_gt: np.ndarray, mask: np.ndarray):
        d = M.pu21_encode(pred[mask] * 100.0) - pu_gt
        self.sse[name] = self.sse.get(name, 0.0) + float((d * d).sum())

    def psnr(self, name: str) -> float:
        return 10 * np.log10(M.PU21_PSNR_PEAK ** 2 / (self.sse[name] / self.n)) if self.n else float("nan")


def label(w0: float, e0: float, s0: float) -> str:
    return f"{w0:g}/{e0:g}" + (f"/{s0:g}" if s0 > 0 else "")


def run_sequence(c: Check, every: int, num_refs: int, grid: list[tuple[float, float, float]]) -> Pooled:
    m, pool = c.model, Pooled()
    # the state carries the references' spread (decode_log, "off", ignores it)
    m.cfg.clue_transfer, m.cfg.clue_transfer_spread = 1.0, 1.0
    cut = lambda t: t[0].numpy().transpose(1, 2, 0)[: c.h, : c.w]  # noqa: E731
    for k in range(0, len(c.ldr), every):
        mask = M.overexposed_mask(np.round(c.ldr[k] * 255).astype(np.uint8)[None], 0.95)[0]
        if not mask.any():
            continue
        pu_gt = M.pu21_encode(c.hdr[k][mask] * 100.0)
        pool.n += pu_gt.size
        key = torch.from_numpy(net_input(c.pad[k]))[None]
        rs, fs = [], []
        for r in c.refs(k, num_refs):
            flow, e = c.align(k, r)
            rs.append(torch.from_numpy(net_input(c.pad[r], ratio=e))[None])
            fs.append(torch.from_numpy(np.ascontiguousarray(flow.transpose(2, 0, 1)))[None])
        with torch.no_grad():
            lin = input_linear(key)
            pool.add("key alone", cut(m.decode(key, *m.init(key))), pu_gt, mask)
            fl, g, _ = m.encode(key, rs, fs)
            logy = m.decode_log(key, fl, g, lin)
            pool.add("off", cut(from_log(logy, lin)), pu_gt, mask)
            for w0, e0, s0 in grid:
                m.cfg.clue_transfer, m.cfg.clue_transfer_level = w0, e0
                # s0 = 0 with a spread-carrying state: a spread no reference can have turns the gate off
                m.cfg.clue_transfer_spread = s0 if s0 > 0 else 1e9
                pool.add(label(w0, e0, s0), cut(from_log(m.transfer(logy, key, fl), lin)), pu_gt, mask)
        print(f"  {k}: {len(rs)} references", file=sys.stderr, flush=True)
    return pool


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT / "data" / "valset"))
    ap.add_argument("--icam", default=str(ROOT / "runs" / "soup_s33_S4" / "icam.pt"))
    ap.add_argument("--every", type=int, default=3, help="every n-th frame (all frames: 1)")
    ap.add_argument("--w0", default="0.125,0.25,0.5", help="weight sums where the transfer starts (full at 2x)")
    ap.add_argument("--e0", default="1.0,1.05,1.15", help="levels (x the clip level) the mean must pass")
    ap.add_argument("--s0", default="0", help="spreads (std of the references' log radiance) above which the "
                    "transfer fades out (none at 2x); 0 = no spread gate")
    ap.add_argument("--sequences", default=None, help="comma-separated names (default: every .npz)")
    ap.add_argument("--num-refs", type=int, default=4, help="references each way at most (ITM's default: 4)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", help="also write the table here")
    a = ap.parse_args(argv)
    if a.every < 1:
        ap.error(f"--every must be at least 1, got {a.every}")
    if not Path(a.icam).exists():
        ap.error(f"--icam {a.icam} not found: give a training checkpoint or soup (runs/... .pt); "
                 "scripts/checkpoint_from_onnx.py rebuilds one from the shipped graphs")
    data = Path(a.data)
    paths = sorted(data.glob("*.npz"))
    if a.sequences:
        want = set(a.sequences.split(","))
        paths = [p for p in paths if p.stem in want]
    if not paths:
        ap.error(f"no .npz sequences in {data}: make them with scripts/make_devset.py")
    torch.set_num_threads(a.threads)
    grid = list(itertools.product(floats(a.w0), floats(a.e0), floats(a.s0)))
    names = ["key alone", "off"] + [label(*p) for p in grid]
    rows = []
    for p in paths:
        print(p.stem, file=sys.stderr, flush=True)
        pool = run_sequence(Check(p, a.icam, homography=True), a.every, a.num_refs, grid)
        rows.append((p.stem, [pool.psnr(n) for n in names]))
    mean = [float(np.nanmean([r[1][i] for r in rows])) for i in range(len(names))]
    lines = [f"{data}, every {a.every}. frame, ICAM {a.icam}; columns: w0/e0[/s0] of the transfer",
             "", "| sequence | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    lines += [f"| {s} | " + " | ".join(f"{v:.2f}" for v in vals) + " |" for s, vals in rows + [("**mean**", mean)]]
    best = max(range(2, len(names)), key=lambda i: mean[i])
    lines += ["", f"highest mean: {names[best]} {mean[best]:.2f} (off {mean[1]:.2f}, key alone {mean[0]:.2f})"]
    text = "\n".join(lines)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
