"""Where the temporal gain is made or lost, with the camera pans' ground truth (vsvitm-make-pans)
(vsvitm-temporal-ablation).

    vsvitm-temporal-ablation --data data/pans/val/128x192 [--num-refs 2] [--key-stride 12]

For every pan, the plugin's own pieces (Engine, vsvitm.temporal) are run outside VapourSynth with the
alignment taken from the truth or estimated, and scored (PU21-PSNR) over clue pixels (clipped pixels
that another frame within reach sees unclipped):

  key frames   single-frame ICAM; the key's fill from its references with (a) true flow and ratio,
               (b) true flow, estimated ratio, (c) estimated flow, true ratio, (d) both estimated
               (what the plugin runs); and under each the plain fill: the mean of the references'
               aligned radiance x exposure ratio wherever a reference is unclipped, no trust weights;
               also the ICAM network with its references (mode="icam"'s key result, estimated alignment)
  all frames   single-frame ICAM, and the key maps of (a) and (d) carried to every frame with true or
               estimated alignment (what mode="temporal" outputs)

Prints one Markdown table per data folder, per pan and mean. --alignment: instead, per pan, how far the
plugin's key -> reference pre-flows are from the true flow (median end-point error over the pixels that
stay in view, then the median and largest over the pairs) and how far their exposure ratios are from the
truth (mean |log2 error|, stops), beside the ratio measured through the true flow (exposure_ratio).
--oracle: instead, how much any fill from measurements could recover: every frame's clipped channels
filled from all frames within the clue mask's reach, with the true flow and exposure, as the mean of
what they saw unclipped, sampled (nearest) at the pixel the clue mask looks at, or bilinearly where all
four taps are unclipped; beside single-frame ICAM, and the share of clue pixels the bilinear fill reaches.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from vsvitm import temporal
from vsvitm.curves import to_linear
from vsvitm.engine import Engine
from vsvitm.itm import KEY_STRIDE, NUM_REFS, key_weights
from vsvitm.schedule import Schedule
from vsvitm.training import metrics as M
from vsvitm.training.pans import flow_from_npz

THR = 0.95


def load_pan(path: Path, eng: Engine) -> tuple[dict, np.ndarray, list, list]:
    """A saved pan and what every variant starts from: (its arrays, code values [T, H, W, 3], f^-1(L) and
    single-frame ICAM of each frame).

    path: the pan's .npz (vsvitm-make-pans); eng: a fresh engine (its caches are keyed by frame number)."""
    d = dict(np.load(path))
    code = d["ldr"].astype(np.float32) / 255.0
    lin = [to_linear(c, "gamma2.2") for c in code]
    return d, code, lin, [eng.icam(t, code[t], [])[0] for t in range(len(code))]


def mean_fill(base, lin, code, num, den):
    """In the frame's clipped channels, the mean num / den of what other frames measured (where den > 0),
    base elsewhere; never below f^-1(L).

    base: the frame's single-frame result; lin: its f^-1(L); code: its code values; num, den: the sums
    of the measurements and of their weights, HxWx3 each."""
    s = temporal.clipped_weight(code, THR) > 0.5
    fill = np.where(den > 0, num / np.maximum(den, 1), base)
    return np.maximum(np.where(s, fill, base), lin)


def plain_fill(base, lin, code, ms_hard):
    """Mean of the aligned references' radiance wherever one is unclipped; base elsewhere (clipped channels).

    base: the key's single-frame result, linear.
    lin: the key's f^-1(L).
    code: the key's code values.
    ms_hard: (aligned reference radiance x ratio, 1 where that reference is unclipped and in view) per reference.
    """
    num = np.zeros_like(base)
    den = np.zeros_like(base)
    for m, ok in ms_hard:
        num += ok * m
        den += ok
    return mean_fill(base, lin, code, num, den)


def clue_score(eng: Engine, code, ys: list, hdr, clue, frames) -> float:
    """PU21-PSNR over clue pixels of results ys (eq. 1 applied) of the frames numbered `frames`.

    eng: the engine (its blend); code: the pan's code values; hdr, clue: its truth and clue masks."""
    pred = np.stack([eng.blend(code[t], y) for t, y in zip(frames, ys)])
    return M.pu21_psnr(pred, hdr[frames], mask=clue[frames])


def run_pan(path: Path, eng: Engine, num_refs: int, key_stride: int, ref_stride: int = 15) -> dict:
    """Clue-pixel PU21-PSNR of every variant (see the module's docstring) on one pan: {variant: score}.

    path: the pan's .npz (vsvitm-make-pans).
    eng: a fresh engine (its caches are keyed by frame number).
    num_refs: references each way of a key frame.
    key_stride: frames between key frames.
    ref_stride: frames between a key frame's references.
    """
    d, code, lin, base = load_pan(path, eng)
    hdr, clue, expo = d["hdr"].astype(np.float32), d["clue"], d["exposure"]
    n = len(code)
    sched = Schedule(n, key_stride=key_stride, ref_stride=ref_stride, num_refs=num_refs)
    keys = sched.keys_in(0, n)
    cl = eng.clip_level
    out = {"key single": [], "key ICAM refs": []}
    maps = {}
    for cond in ("a", "b", "c", "d"):
        out[f"key fill {cond}"], out[f"key plain {cond}"] = [], []
    for k in keys:
        refs = sched.references(k, [])
        out["key single"].append(base[k])
        out["key ICAM refs"].append(eng.icam(k, code[k], [(r, code[r]) for r in refs])[0])
        est = {r: eng.pair(k, code[k], r, code[r]) for r in refs}
        for cond, (gt_flow, gt_ratio) in {"a": (True, True), "b": (True, False), "c": (False, True),
                                          "d": (False, False)}.items():
            ms, hard = [], []
            for r in refs:
                flow = flow_from_npz(d, k, r)[0] if gt_flow else est[r][0]
                ratio = float(expo[k] / expo[r]) if gt_ratio else float(est[r][1])
                ms.append(temporal.measure(code[k], lin[k], code[r], lin[r], flow, ratio, THR))
                m, inside = temporal.remap(lin[r], flow)
                cr, _ = temporal.remap(code[r], flow)
                hard.append((m * ratio, ((cr < 240 / 255) & (inside[..., None] > 0.99)).astype(np.float32)))
            y, conf = temporal.fuse(base[k], lin[k], code[k], cl, THR, ms)
            out[f"key fill {cond}"].append(y)
            out[f"key plain {cond}"].append(plain_fill(base[k], lin[k], code[k], hard))
            maps[(cond, k)] = temporal.radiance_map(y, lin[k], code[k], conf, THR) + (code[k],)
    # carried to every frame
    frames = {"all single": base}
    for cond in ("a", "d"):
        for align in ("true", "est"):
            ys = []
            for t in range(n):
                carried = []
                for k, wt in key_weights(t, keys):
                    rad, trust, ck = maps[(cond, k)]
                    if k == t:
                        carried.append((wt, None, 1.0, ck, rad, trust))
                    elif align == "true":
                        carried.append((wt, flow_from_npz(d, t, k)[0], float(expo[t] / expo[k]), ck, rad, trust))
                    else:
                        flow, e = eng.preflow(t, code[t], k, code[k])   # as the plugin: plain DIS
                        carried.append((wt, flow, float(e), ck, rad, trust))
                ys.append(temporal.fuse(base[t], lin[t], code[t], cl, THR, temporal.carried(code[t], lin[t], THR, carried), w0=None)[0])
            frames[f"all carry {cond}, {align} alignment"] = ys
    scores = {name: clue_score(eng, code, ys, hdr, clue, keys) for name, ys in out.items()}
    scores.update({name: clue_score(eng, code, ys, hdr, clue, list(range(n))) for name, ys in frames.items()})
    return scores


def alignment_stats(path: Path, eng: Engine, num_refs: int, key_stride: int, ref_stride: int) -> dict:
    """Pre-flow end-point error and exposure-ratio errors of a pan's key -> reference pairs (see --alignment).

    path: the pan's .npz (vsvitm-make-pans).
    eng: a fresh engine.
    num_refs: references each way of a key frame.
    key_stride: frames between key frames.
    ref_stride: frames between a key frame's references.
    """
    from vsvitm.flow import exposure_ratio, luma, warp_np
    d = dict(np.load(path))
    code = d["ldr"].astype(np.float32) / 255.0
    expo, n = d["exposure"], d["ldr"].shape[0]
    sched = Schedule(n, key_stride=key_stride, ref_stride=ref_stride, num_refs=num_refs)
    epe, est, true_flow = [], [], []
    for k in sched.keys_in(0, n):
        for r in sched.references(k, []):
            flow, e = eng.pair(k, code[k], r, code[r])
            gt, valid = flow_from_npz(d, k, r)
            if valid.any():
                epe.append(float(np.median(np.linalg.norm(flow - gt, axis=-1)[valid])))
            truth = float(expo[k] / expo[r])
            est.append(abs(np.log2(float(e) / truth)))
            lk, lr = to_linear(code[k], "gamma2.2"), to_linear(code[r], "gamma2.2")
            e_true = exposure_ratio(luma(lk), luma(warp_np(lr, gt)), default=None)
            if e_true is not None:
                true_flow.append(abs(np.log2(e_true / truth)))
    return {"pairs": len(est), "EPE median (px)": float(np.median(epe)), "EPE largest (px)": float(np.max(epe)),
            "ratio error (stops)": float(np.mean(est)), "ratio error, true flow (stops)": float(np.mean(true_flow))}


def oracle_fill(path: Path, eng: Engine) -> dict:
    """Clue-pixel scores of the ground-truth fill of every frame (see --oracle) for one pan.

    path: the pan's .npz (vsvitm-make-pans); eng: a fresh Engine (single-frame ICAM where nothing fills)."""
    from vsvitm.training.pans import UNCLIPPED_CODE, nearest_at
    d, code, lin, base = load_pan(path, eng)
    ldr, hdr, clue, expo = d["ldr"], d["hdr"].astype(np.float32), d["clue"], d["exposure"]
    n, reach = len(code), int(d["reach"])
    filled, reached = {"nearest": [], "bilinear": []}, [0, 0]
    for t in range(n):
        acc = {name: [np.zeros_like(base[t]), np.zeros_like(base[t])] for name in filled}
        for r in range(max(0, t - reach), min(n, t + reach + 1)) if clue[t].any() else ():
            if r == t:
                continue
            flow, valid = flow_from_npz(d, t, r)
            ratio = float(expo[t] / expo[r])
            near = nearest_at(ldr[r], flow)
            ok = (valid & (near.max(-1) <= UNCLIPPED_CODE))[..., None]
            acc["nearest"][0] += ok * to_linear(near.astype(np.float32) / 255.0, "gamma2.2") * ratio
            acc["nearest"][1] += ok
            m, inside = temporal.remap(lin[r], flow)
            ok = (temporal.tap_clipping(code[r], flow, UNCLIPPED_CODE / 255.0) < 0.5) & (inside[..., None] > 0.99)
            acc["bilinear"][0] += ok * m * ratio
            acc["bilinear"][1] += ok
        reached[0] += int((acc["bilinear"][1].min(-1)[clue[t]] > 0).sum())
        reached[1] += int(clue[t].sum())
        for name, (num, den) in acc.items():
            filled[name].append(mean_fill(base[t], lin[t], code[t], num, den))
    every = list(range(n))
    scores = {"single": clue_score(eng, code, base, hdr, clue, every)}
    scores.update({f"truth fill, {name}": clue_score(eng, code, ys, hdr, clue, every) for name, ys in filled.items()})
    scores["clue pixels the bilinear fill reaches"] = reached[0] / max(reached[1], 1)
    return scores


def main(argv=None) -> int:
    """Entry point of vsvitm-temporal-ablation.

    argv: command-line arguments (None: sys.argv[1:]).
    """
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="folder of pan .npz files (vsvitm-make-pans)")
    ap.add_argument("--num-refs", type=int, default=NUM_REFS["temporal"],
                    help="references each way of a key frame (default: the temporal mode's)")
    ap.add_argument("--ref-stride", type=int, default=15, help="frames between a key frame's references (default 15)")
    ap.add_argument("--key-stride", type=int, default=KEY_STRIDE["temporal"],
                    help="frames between key frames (default: the temporal mode's)")
    ap.add_argument("--alignment", action="store_true", help="only the pre-flows' and exposure ratios' errors")
    ap.add_argument("--oracle", action="store_true", help="only the ground-truth fill of every frame (the most "
                    "that measurements can recover)")
    args = ap.parse_args(argv)
    paths = sorted(args.data.glob("*.npz"))
    if not paths:
        ap.error(f"no .npz files in {args.data}: run vsvitm-make-pans first")
    def engine() -> Engine:
        """A fresh engine per pan: its caches are keyed by frame number."""
        return Engine(None, None, need_fcpm=False, transfer="gamma2.2", threshold=THR, exposure_norm=True,
                      cache_bytes=512 << 20)
    rows = {}
    if args.alignment:
        w = np.load(paths[0])["ldr"].shape[2]
        print(f"key -> reference alignment, {args.data} (frames {w} px wide), num_refs {args.num_refs}, "
              f"ref stride {args.ref_stride}, key stride {args.key_stride}\n")
        stats = {p.stem: alignment_stats(p, engine(), args.num_refs, args.key_stride, args.ref_stride) for p in paths}
        cols = list(next(iter(stats.values())))
        print("| pan | " + " | ".join(cols) + " |")
        print("|---|" + "---:|" * len(cols))
        for name, st in stats.items():
            print(f"| {name} | " + " | ".join(f"{v:.0f}" if c == "pairs" else f"{v:.2f}" for c, v in st.items()) + " |")
        return 0
    for p in paths:
        rows[p.stem] = (oracle_fill(p, engine()) if args.oracle else
                        run_pan(p, engine(), args.num_refs, args.key_stride, args.ref_stride))
        print(f"{p.stem}: " + ", ".join(f"{k} {v:.2f}" for k, v in rows[p.stem].items()), file=sys.stderr, flush=True)
    names = list(next(iter(rows.values())))
    setting = "ground-truth fill" if args.oracle else (f"num_refs {args.num_refs}, ref stride {args.ref_stride}, "
                                                        f"key stride {args.key_stride}")
    print(f"clue-pixel PU21-PSNR, {args.data}, {setting}\n")
    print("| | " + " | ".join(rows) + " | mean |")
    print("|---|" + "---:|" * (len(rows) + 1))
    for name in names:
        vals = [rows[s][name] for s in rows]
        print(f"| {name} | " + " | ".join(f"{v:.2f}" for v in vals) + f" | {np.nanmean(vals):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
