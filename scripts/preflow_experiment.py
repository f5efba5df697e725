#!/usr/bin/env python3
"""Experiment (stop 24): the plugin's pre-flow with another OpenCV DIS preset or working size.

    python scripts/preflow_experiment.py --preset medium [--max-side 320] [--fcpm-preset fast] [--finest-scale 2] \
        [--reduce-at-most 2] -- <scripts/evaluate.py arguments>

e.g. `... --preset medium -- --data data/valset --no-cvvdp --only "ICAM only,full"`. Runs scripts/evaluate.py
with the Engine's DISFlow (vsvitm/flow.py) replaced, in place of ITM(preflow=...). The pre-flow feeds ICAM
(key -> reference) and FCPM's merge (key -> frame) and recurrence (neighbours) alike; --fcpm-preset gives
the pairs made outside ICAM their own preset (ICAM's pairs and FCPM's never coincide: a key frame is never
another key's reference, so the cache keeps them apart). The networks were trained on FAST pre-flows, which
their flow-correction layers refine; a better pre-flow may still align far references that FAST loses.
"""
from __future__ import annotations

import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from vsvitm.flow import PRESETS as PLUGIN_PRESETS  # noqa: E402

PRESETS = {"ultrafast": 0, **PLUGIN_PRESETS}  # cv2.DISOPTICAL_FLOW_PRESET_*


def add_args(ap):
    ap.add_argument("--preset", choices=tuple(PRESETS), required=True)
    ap.add_argument("--max-side", type=int, default=320, help="DIS working size: longer side at most this")
    ap.add_argument("--fcpm-preset", choices=tuple(PRESETS), help="preset of the pairs made outside ICAM")
    ap.add_argument("--finest-scale", type=int, help="DIS's finest pyramid level (the presets: FAST 2, MEDIUM 1)")
    ap.add_argument("--reduce-at-most", type=float,
                    help="working size: the longer side at most max(--max-side, frame's longer side / this)")


def install(a):
    from vsvitm import engine, flow

    class Tuned(flow.DISFlow):
        def create(self):  # the preset with its finest scale changed
            dis = super().create()
            if a.finest_scale is not None:
                dis.setFinestScale(a.finest_scale)
            return dis

        def work_size(self, h, w):  # flow.DISFlow.work_size with the working size following the frame's
            if a.reduce_at_most is None:
                return super().work_size(h, w)
            return flow.DISFlow(self.preset, max(self.max_side, max(h, w) / a.reduce_at_most)).work_size(h, w)
    make = flow.DISFlow if a.finest_scale is None and a.reduce_at_most is None else Tuned
    engine.DISFlow = lambda preset=None: make(PRESETS[a.preset], a.max_side)  # in place of ITM(preflow=...)
    if a.fcpm_preset is None:
        return
    other = flow.DISFlow(PRESETS[a.fcpm_preset], a.max_side)
    flows_by_stage(lambda flow_fn, in_icam: flow_fn if in_icam else other)


def flows_by_stage(choose) -> None:
    """Patch the engine so each pre-flow is made by choose(flow_fn, in_icam): in_icam is True for ICAM's
    key -> reference pairs (made inside Engine.icam) and False for FCPM's (merge, recurrence)."""
    from vsvitm import engine
    inside = threading.local()   # VapourSynth runs frames on several threads: a flag per thread
    icam, align = engine.Engine.icam, engine.align_small

    def icam_flagged(self, *args, **kw):
        inside.icam = True
        try:
            return icam(self, *args, **kw)
        finally:
            inside.icam = False

    def align_small(sk, sr, flow_fn, *args, **kw):
        return align(sk, sr, choose(flow_fn, getattr(inside, "icam", False)), *args, **kw)
    engine.Engine.icam, engine.align_small = icam_flagged, align_small


if __name__ == "__main__":
    import evaluate
    evaluate.main_patched(__doc__, add_args, install)
