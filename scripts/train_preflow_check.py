#!/usr/bin/env python3
"""How far off the training pre-flows are (stop 32): endpoint error against the synthetic truth, by reference distance.

    python scripts/train_preflow_check.py [--data ../shared/data] [--sequences 30] [--size 128] [--seed 5]

Draws training sequences as train_icam.py does (synth.pick_source with the graded roll-off of --knee, a key frame
and up to 4 references each way at stride 15) and makes each key -> reference pre-flow with plain DIS MEDIUM
(`--preflow medium`) and with DIS started from a feature homography (flow.HomographyDIS, `--homography-preflow`).
Prints the mean and median endpoint error over the pixels the truth marks valid, per distance, and the time per
pair; and how far the references' exposures are from the key's (|log2 T_key / T_ref|, shares). Why: ICAM's flow
correction learns from what these pre-flows miss, so the run-time pre-flow should miss in the same way; and
train_icam.py --near-exposure (stop 32) was meant to add references exposed close to the key.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vsvitm.curves import to_linear  # noqa: E402
from vsvitm.flow import DISFlow, HomographyDIS, align_pair  # noqa: E402
from vsvitm.training.icam_data import pick_key  # noqa: E402
from vsvitm.training.synth import load_sources, pick_source, synth_sequence  # noqa: E402


def measure(sources, n_seq: int, size: int, seed: int, knee: float = 0.5) -> dict:
    """{name: [(distance, mean endpoint error), ...]}, {name: seconds per pair} for both pre-flows, and the
    references' exposure offsets |log2 T_key / T_ref| (stops)."""
    rng = np.random.default_rng(seed)
    fns = {"DIS medium": DISFlow("medium"), "homography + DIS medium": HomographyDIS("medium")}
    errs = {k: [] for k in fns}
    secs = dict.fromkeys(fns, 0.0)
    stops = []
    timed = 0   # every pair is timed, also those without valid truth pixels (which give no error)
    for _ in range(n_seq):
        seq = synth_sequence(pick_source(sources, rng, None, knee), 181, (size, size), seed=int(rng.integers(2**31)))
        key, cands = pick_key(rng, 181, 8)
        refs = cands[:8]
        ldr = seq.render([key] + refs)["ldr"].astype(np.float32) / 255
        lin_k = to_linear(ldr[0])
        for j, r in enumerate(refs):
            stops.append(abs(float(np.log2(seq.exposure[key] / seq.exposure[r]))))
            gt, valid = seq.flow(key, r)
            timed += 1
            for name, fn in fns.items():
                t = time.perf_counter()
                f = align_pair(lin_k, to_linear(ldr[j + 1]), fn, True)[0]
                secs[name] += time.perf_counter() - t
                e = np.linalg.norm(f - gt, axis=-1)[valid > 0.5]
                if e.size:
                    errs[name].append((abs(r - key), float(e.mean())))
    return errs, {k: v / max(1, timed) for k, v in secs.items()}, np.array(stops)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shared = ROOT.parent / "shared" / "data"
    ap.add_argument("--data", default=str(shared) if shared.exists() else None)
    ap.add_argument("--sequences", type=int, default=30)
    ap.add_argument("--size", type=int, default=128, help="training crop side (train_icam.py --size)")
    ap.add_argument("--seed", type=int, default=5)
    a = ap.parse_args(argv)
    if not a.data or not Path(a.data).exists():
        ap.error("no data folder: pass --data DIR (HDR stills/videos; see ../shared/data/README.md)")
    errs, secs, stops = measure(load_sources(a.data, split="train"), a.sequences, a.size, a.seed)
    dists = sorted({d for v in errs.values() for d, _ in v})
    print(f"{a.sequences} training sequences of {a.size}x{a.size}, seed {a.seed}: endpoint error (px), mean over pairs")
    print("| pre-flow | mean | median | " + " | ".join(f"distance {d}" for d in dists) + " | ms per pair |")
    print("|---|---:|---:|" + "---:|" * len(dists) + "---:|")
    for name, v in errs.items():
        arr = np.array(v, float).reshape(-1, 2)
        by = [f"{arr[arr[:, 0] == d, 1].mean():.2f}" for d in dists]
        print(f"| {name} | {arr[:, 1].mean():.2f} | {np.median(arr[:, 1]):.2f} | " + " | ".join(by)
              + f" | {1000 * secs[name]:.1f} |")
    print(f"\nreferences' exposure offset from the key ({len(stops)}): below 0.01 stop {np.mean(stops < 0.01):.0%}, "
          f"0.02-0.2 stop {np.mean((stops > 0.02) & (stops < 0.2)):.0%}, above 0.5 stop {np.mean(stops > 0.5):.0%}, "
          f"median {np.median(stops):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
