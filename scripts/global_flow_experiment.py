#!/usr/bin/env python3
"""Experiment (stop 31): ICAM's key -> reference pre-flows started from a global homography.

    python scripts/global_flow_experiment.py [--all-pairs] [--features 1000] -- <scripts/evaluate.py arguments>

e.g. `... -- --data data/valset --no-cvvdp --method 'ICAM gh:{"mode":"icam"}' --method 'full gh:{}' --only "ICAM gh,full gh"`.
Runs scripts/evaluate.py with the pre-flow of ICAM's pairs (key frame -> reference, 15 to 60 frames apart) made by
OpenCV DIS from an initial flow: the homography of ORB feature matches (RANSAC) between the two exposure-normalised
luma images at DIS's working size. Where too few matches agree, plain DIS as before. --all-pairs also does it for
FCPM's pairs (merge and recurrence). Why: scripts/ratio_check.py found the plugin's DIS pre-flows missing by 12-57 px
on far references of two stills with a moving camera (MtTamNorth_RGB, ultraHDR), and DIS alone, coarse to fine,
does not find motions that large. The flow itself is vsvitm.flow.HomographyDIS (stop 32), which the plugin uses for an
ICAM exported with --homography-preflow; this script applies it to any models folder.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))



def add_args(ap):
    ap.add_argument("--all-pairs", action="store_true", help="also FCPM's pairs (merge, recurrence), not only ICAM's")
    ap.add_argument("--features", type=int, default=1000, help="ORB features per image")


def install(a):
    from preflow_experiment import flows_by_stage

    from vsvitm import engine, flow

    if a.all_pairs:
        engine.DISFlow = lambda preset=flow.RUNTIME_PRESET: flow.HomographyDIS(preset, features=a.features)
        return
    made = {}

    def choose(flow_fn, in_icam):
        if not in_icam:
            return flow_fn
        key = (flow_fn.preset, flow_fn.max_side)
        if key not in made:
            made[key] = flow.HomographyDIS(*key, features=a.features)
        return made[key]
    flows_by_stage(choose)


if __name__ == "__main__":
    import evaluate
    evaluate.main_patched(__doc__, add_args, install)
