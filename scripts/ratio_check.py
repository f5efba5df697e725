#!/usr/bin/env python3
"""How far the plugin's exposure ratios are from the truth, on synthetic sequences with known exposures.

    python scripts/ratio_check.py [--data data/devset] [--preflow medium] [--num-refs 4] [--out FILE.md]

For every key frame of every shot (vsvitm.schedule.Schedule: key frames every 6, references every 15, --num-refs each
way; shots from the same thumbnail cut detector as ITM's, or from the sequence's `src_index` jumps when --cuts src) and
each of its references, the pre-flow's exposure ratio (flow.align_pair: the median key/ref luma ratio over pixels
well exposed in both, through the flow, on f^-1(L) of the 8-bit frames with gamma 2.2) is compared with the true
one, exposure[key] / exposure[ref] from the .npz. Reported per sequence and reference distance: the mean and mean
absolute log2 error (stops), and the share of pairs off by more than 0.1 stop; for comparison, the same for a
ratio from matched luma quantiles (no pixel correspondence), and, for sequences made from stills (where the
camera's homographies give the true flow), the same median taken through the true flow and the pre-flow's mean
endpoint error against it, also for the pre-flow of scripts/global_flow_experiment.py (DIS started from the
homography of feature matches). A ratio too high brings a reference to more than the
key's exposure, and then its clipped pixels read as radiance above the key's clip level. For video sources the
truth is only the camera's exposure: the scene's own light may change between the frames.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vsvitm.curves import to_linear  # noqa: E402
from vsvitm.flow import DISFlow, HomographyDIS, align_pair, exposure_ratio, luma, warp_np  # noqa: E402
from vsvitm.itm import thumbnail_cut, thumbnail_luma  # noqa: E402
from vsvitm.schedule import Schedule  # noqa: E402
from vsvitm.training.synth import camera_flow  # noqa: E402


def thumbnail_cuts(ldr: np.ndarray, threshold: float = 0.2) -> list[int]:
    """ITM's thumbnail cut detector (itm.thumbnail_luma, itm.thumbnail_cut) on uint8 frames; the thumbnails come from
    OpenCV's resize, not VapourSynth's, so a borderline cut may come out otherwise."""
    y = [thumbnail_luma(cv2.resize(f.astype(np.float32) / 255.0, (64, 36), interpolation=cv2.INTER_LINEAR)) for f in ldr]
    n = len(y)
    return [i for i in range(1, n) if thumbnail_cut([y[max(i - 2, 0)], y[i - 1], y[i], y[min(i + 1, n - 1)]], i, n,
                                                    threshold)]


def quantile_ratio(yk: np.ndarray, yr: np.ndarray, lo: float = 0.01, hi: float = 0.75) -> float:
    """For comparison: the ratio from matched quantiles of the two frames' luma where both lie in (lo, hi)
    (no pixel correspondence needed; the scene's content must stay the same)."""
    qs = np.linspace(0.02, 0.98, 49)
    a, b = np.quantile(yk, qs), np.quantile(yr, qs)
    ok = (a > lo) & (a < hi) & (b > lo) & (b < hi)
    return float(np.exp(np.median(np.log(a[ok] / b[ok])))) if ok.sum() >= 3 else 1.0


def check(path: Path, flow_fn: DISFlow, global_flow: DISFlow, num_refs: int, cut_source: str) -> list[tuple]:
    """(distance, plugin's log2 error, quantiles' log2 error, log2 error through the true flow, pre-flow error px,
    homography-started pre-flow error px) per key -> reference pair; NaN where a still's true flow is needed."""
    z = np.load(path)
    ldr, exposure, homography = z["ldr"], z["exposure"].astype(np.float64), z["homography"].astype(np.float64)
    still = not bool(z["is_video"])
    if cut_source == "src":
        src = z["src_index"]
        cuts = [i for i in range(1, len(src)) if abs(int(src[i]) - int(src[i - 1])) > 1]
    else:
        cuts = thumbnail_cuts(ldr)
    sched = Schedule(len(ldr), num_refs=num_refs)
    lin = {}

    def f_inv(i):
        if i not in lin:
            lin[i] = to_linear(ldr[i].astype(np.float32) / 255.0)
        return lin[i]

    rows, done = [], set()
    for n in range(len(ldr)):
        start, end = sched.shot(n, cuts)
        for k in sched.keys_in(start, end):
            if k in done:
                continue
            done.add(k)
            for r in sched.references(k, cuts):
                truth = exposure[k] / exposure[r]
                pre, est = align_pair(f_inv(k), f_inv(r), flow_fn)
                q = quantile_ratio(flow_fn.reduce(luma(f_inv(k))), flow_fn.reduce(luma(f_inv(r))))
                gt_err = epe = epe_h = np.nan
                if still:  # the camera's true flow is known: the same median through it, and the pre-flow's error
                    gt, valid = camera_flow(homography[k], homography[r], ldr.shape[1:3])
                    gt_err = np.log2(exposure_ratio(luma(f_inv(k)), warp_np(luma(f_inv(r)), gt)) / truth)
                    if valid.any():
                        epe = float(np.linalg.norm(pre - gt, axis=-1)[valid].mean())
                        # DIS started from a feature homography (flow.HomographyDIS, global_flow_experiment.py)
                        fh = align_pair(f_inv(k), f_inv(r), global_flow)[0]
                        epe_h = float(np.linalg.norm(fh - gt, axis=-1)[valid].mean())
                rows.append((abs(r - k), float(np.log2(est / truth)), float(np.log2(q / truth)), gt_err, epe, epe_h))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT / "data" / "devset"), help="folder of .npz sequences (make_devset.py)")
    ap.add_argument("--preflow", default="medium", help="DIS preset (the plugin's default: medium)")
    ap.add_argument("--num-refs", type=int, default=4, help="references each way (ITM's default: 4)")
    ap.add_argument("--cuts", choices=("thumbnail", "src"), default="thumbnail",
                    help="shots from ITM's thumbnail detector (default) or from jumps in the source frame index")
    ap.add_argument("--out", help="also write the table to this Markdown file")
    a = ap.parse_args(argv)
    files = sorted(Path(a.data).glob("*.npz"))
    if not files:
        raise SystemExit(f"no .npz sequences in {a.data}: make them with scripts/make_devset.py")
    flow_fn = DISFlow(a.preflow)
    global_flow = HomographyDIS(flow_fn.preset, flow_fn.max_side)
    lines = ["| sequence | distance | pairs | plugin: mean / mean abs (stops), > 0.1 stop | "
             "matched quantiles | the plugin's median through the true flow (stills) | pre-flow error, px (stills) | "
             "the same, started from a homography (global_flow_experiment.py) |", "|---|---:|---:|---|---|---|---:|---:|"]
    for f in files:
        rows = np.array(check(f, flow_fn, global_flow, a.num_refs, a.cuts)).reshape(-1, 6)
        if not len(rows):
            lines.append(f"| {f.stem} | – | 0 | no references | – | – | – | – |")
            continue
        for dist in sorted(set(rows[:, 0].astype(int))) + ["all"]:
            m = np.ones(len(rows), bool) if dist == "all" else rows[:, 0] == dist
            cells = [f"{e.mean():+.3f} / {np.abs(e).mean():.3f}, {(np.abs(e) > 0.1).mean():.0%}"
                     if np.isfinite(e).all() else "–" for e in rows[m, 1:4].T]
            for epe in (rows[m, 4], rows[m, 5]):
                cells.append(f"{np.nanmean(epe):.2f}" if np.isfinite(epe).any() else "–")
            lines.append(f"| {f.stem} | {dist} | {m.sum()} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
