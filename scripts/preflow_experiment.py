#!/usr/bin/env python3
"""Experiment (stop 24): the plugin's pre-flow with another OpenCV DIS preset or working size.

    python scripts/preflow_experiment.py --preset medium [--max-side 320] -- <scripts/evaluate.py arguments>

e.g. `... --preset medium -- --data data/valset --no-cvvdp --only "ICAM only,full"`. Runs scripts/evaluate.py
with the Engine's DISFlow (vsvitm/flow.py; preset FAST, longer side at most 320 px) replaced. The pre-flow
feeds ICAM (key -> reference) and FCPM's merge (key -> frame) alike. The networks were trained on FAST
pre-flows, which their flow-correction layers refine; a better pre-flow may still align far references
that FAST loses (forward driving, large motion).
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

PRESETS = {"ultrafast": 0, "fast": 1, "medium": 2}


def add_args(ap):
    ap.add_argument("--preset", choices=tuple(PRESETS), required=True)
    ap.add_argument("--max-side", type=int, default=320, help="DIS working size: longer side at most this")


def install(a):
    from vsvitm import engine, flow
    engine.DISFlow = lambda preset=None: flow.DISFlow(PRESETS[a.preset], a.max_side)  # in place of ITM(preflow=...)


if __name__ == "__main__":
    import evaluate
    evaluate.main_patched(__doc__, add_args, install)
