#!/usr/bin/env python3
"""Which way each reference moves ICAM's guess in the key frame's clipped pixels (stop 32).

    python scripts/ref_push_check.py [--data data/devset] [--sequence roadtrip-vp92-10bit] [--icam CKPT]
        [--keys 9,21,105,111] [--num-refs 4] [--bands] [--homography-preflow]

For each key frame it runs the torch ICAM (a training checkpoint or a soup; default stop 31's soup,
runs/soup_s30c/icam.pt) without references, with the plugin's references (k +- 15 i, i <= --num-refs, inside the
key's shot: ITM's thumbnail cut rule, as scripts/ratio_check.py finds it), with the same references at the true
exposure ratio, and with each reference alone. Pre-flows: plain DIS MEDIUM, or with --homography-preflow DIS started
from a feature homography, as the plugin makes them for an ICAM exported that way (stop 32's). It prints, over the
channels the key clipped (LDR code >= 0.95, the evaluation's rule), the mean signed log error log(Y) - log(truth):
positive = brighter than the truth. Each reference's entry also gives its true and estimated exposure offset (log2
key/ref). --bands adds, for the first key, the same per band of 20 rows, with how much of each band the aligned
references leave clipped.
Why: evaluate.py said roadtrip loses ~1 dB with references; this says whether a reference pushes the guess up or
down and whether its exposure ratio is the cause. Frames are padded to ICAM's modulus (64) by edge replication and
scored on the original area.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from export_models import load  # noqa: E402
from ratio_check import thumbnail_cuts  # noqa: E402

from vsvitm.curves import to_linear  # noqa: E402
from vsvitm.flow import RUNTIME_PRESET, DISFlow, HomographyDIS, align_pair, warp_np  # noqa: E402
from vsvitm.prep import net_input  # noqa: E402
from vsvitm.training.icam_net import ICAM, ICAMConfig  # noqa: E402

MOD = 64  # ICAM's input modulus: 1/16 resolution in 4x4 attention windows


class Check:
    def __init__(self, npz: Path, icam: str, preset: str = RUNTIME_PRESET, homography: bool = False):
        z = np.load(npz)
        self.ldr = z["ldr"].astype(np.float32) / 255.0
        self.hdr = z["hdr"].astype(np.float32)
        self.exposure = z["exposure"].astype(np.float64)
        self.h, self.w = self.ldr.shape[1:3]
        ph, pw = -self.h % MOD, -self.w % MOD
        self.pad = np.pad(self.ldr, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
        cuts = thumbnail_cuts(z["ldr"])
        self.shots = list(zip([0] + cuts, cuts + [len(self.ldr)]))
        self.model = load(icam, ICAM, ICAMConfig)[0]
        self.flow_fn = HomographyDIS(preset) if homography else DISFlow(preset)

    def refs(self, k: int, num_refs: int) -> list[int]:
        a, b = next(s for s in self.shots if s[0] <= k < s[1])
        return [k + s * 15 * i for i in range(1, num_refs + 1) for s in (-1, 1) if a <= k + s * 15 * i < b]

    def align(self, k: int, r: int):
        return align_pair(to_linear(self.pad[k]), to_linear(self.pad[r]), self.flow_fn, True)

    def run(self, k: int, refs: list[int], true_ratio: bool = False) -> np.ndarray:
        key = torch.from_numpy(net_input(self.pad[k]))[None]
        rs, fs = [], []
        for r in refs:
            flow, e = self.align(k, r)
            if true_ratio:
                e = float(self.exposure[k] / self.exposure[r])
            rs.append(torch.from_numpy(net_input(self.pad[r], ratio=e))[None])
            fs.append(torch.from_numpy(np.ascontiguousarray(flow.transpose(2, 0, 1)))[None])
        with torch.no_grad():
            y = self.model(key, rs, fs)[0]
        return y[0].numpy().transpose(1, 2, 0)[: self.h, : self.w]

    def bias(self, k: int, y: np.ndarray, rows: slice = slice(None)) -> tuple[float, int]:
        clip = self.ldr[k][rows] >= 0.95
        if not clip.any():
            return float("nan"), 0
        d = np.log(np.maximum(y[rows][clip], 1e-4)) - np.log(np.maximum(self.hdr[k][rows][clip], 1e-4))
        return float(d.mean()), int(clip.sum())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = ROOT / "data" / "devset"
    ap.add_argument("--data", default=str(data))
    ap.add_argument("--sequence", default="roadtrip-vp92-10bit")
    ap.add_argument("--icam", default=str(ROOT / "runs" / "soup_s30c" / "icam.pt"))
    ap.add_argument("--keys", default="9,21,33,105,111,117,123,129,135,141")
    ap.add_argument("--num-refs", type=int, default=4, help="references each way at most (ITM's default: 4)")
    ap.add_argument("--bands", action="store_true")
    ap.add_argument("--homography-preflow", action="store_true",
                    help="pre-flows started from a feature homography (for an ICAM trained on them: stop 32's)")
    a = ap.parse_args(argv)
    npz = Path(a.data) / f"{a.sequence}.npz"
    if not npz.exists():
        ap.error(f"{npz} not found: make the development set first (scripts/make_devset.py)")
    if not Path(a.icam).exists():
        ap.error(f"--icam {a.icam} not found: give a training checkpoint or soup (runs/... .pt)")
    torch.set_num_threads(1)
    c = Check(npz, a.icam, homography=a.homography_preflow)
    keys = [int(x) for x in a.keys.split(",")]
    print(f"{a.sequence}: shots {c.shots}; ICAM {a.icam}; pre-flows {type(c.flow_fn).__name__}")
    print("| key | clipped channels | no refs | refs | refs, true ratio "
          "| each reference alone: offset (true / est. stops): bias |")
    print("|---:|---:|---:|---:|---:|---|")
    tot = []
    for k in keys:
        refs = c.refs(k, a.num_refs)
        b0, n = c.bias(k, c.run(k, []))
        if not refs:
            print(f"| {k} | {n} | {b0:+.3f} | – | – | no reference inside the shot |")
            continue
        ba, bt = c.bias(k, c.run(k, refs))[0], c.bias(k, c.run(k, refs, true_ratio=True))[0]
        each = []
        for r in refs:
            e = c.align(k, r)[1]
            each.append(f"{r - k:+d} ({np.log2(c.exposure[k] / c.exposure[r]):+.2f} / {np.log2(e):+.2f}): "
                        f"{c.bias(k, c.run(k, [r]))[0]:+.3f}")
        print(f"| {k} | {n} | {b0:+.3f} | {ba:+.3f} | {bt:+.3f} | {'; '.join(each)} |", flush=True)
        tot.append((n, b0, ba))
    if tot:
        w = np.array([t[0] for t in tot], float)
        print(f"\nweighted by clipped channels: no refs {np.average([t[1] for t in tot], weights=w):+.3f}, "
              f"refs {np.average([t[2] for t in tot], weights=w):+.3f}")
    if a.bands:
        k = keys[0]
        refs = c.refs(k, a.num_refs)
        y0, ya = c.run(k, []), c.run(k, refs)
        warped = [warp_np(np.ascontiguousarray(c.pad[r]), c.align(k, r)[0])[: c.h, : c.w] for r in refs]
        print(f"\nkey {k}, references {refs}, bands of 20 rows:")
        print("| rows | clipped channels | mean truth there | no refs | refs "
              "| share the aligned references leave clipped |")
        print("|---|---:|---:|---:|---:|---:|")
        for r0 in range(0, c.h, 20):
            rows = slice(r0, r0 + 20)
            clip = c.ldr[k][rows] >= 0.95
            if clip.sum() < 50:
                continue
            still = np.mean([(wr[rows][clip] >= 0.95).mean() for wr in warped]) if warped else float("nan")
            print(f"| {r0}-{r0 + 19} | {int(clip.sum())} | {c.hdr[k][rows][clip].mean():.3f} | "
                  f"{c.bias(k, y0, rows)[0]:+.3f} | {c.bias(k, ya, rows)[0]:+.3f} | {still:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
