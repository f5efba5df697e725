#!/usr/bin/env python3
"""Experiment (stop 25): references for keys that have none one way (short shots, keys near a shot's end).

    python scripts/edge_refs_experiment.py [--gap 8] -- <scripts/evaluate.py arguments>

e.g. `... -- --data data/valset --no-cvvdp --method 'ICAM edge:{"mode":"icam"}' --method 'full edge:{}' --only
"ICAM edge,full edge"`. Runs scripts/evaluate.py with Schedule.references extended: where none of k -/+ ref_stride * i
lies inside k's shot in one direction, that direction gets the shot's farthest frame (its first or last frame), if it
lies at least --gap frames from k (default: half a stride, rounded up). References stay nearest first, past before
future; num_refs=0 (single frame) stays without references.
Why: with references every 15 frames, a shot shorter than 16 frames gives its keys none, and keys within 15 frames of
a shot's end get them from one side only, although the shot may hold frames exposed otherwise.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


def with_edges(sched, k: int, cuts, refs: list[int], gap: int) -> list[int]:
    """The plugin's references of key k plus the shot's first/last frame for a direction that has none."""
    if not sched.num_refs:
        return list(refs)
    start, end = sched.shot(k, cuts)
    out = list(refs)
    for edge, way in ((start, -1), (end - 1, 1)):
        if abs(edge - k) >= gap and not any((r - k) * way > 0 for r in out):
            out.append(edge)
    return sorted(out, key=lambda r: (abs(r - k), r > k))


def add_args(ap):
    ap.add_argument("--gap", type=int, help="least distance from the key to an edge reference "
                                            "(default: half the reference stride, rounded up)")


def install(a):
    from vsvitm.schedule import Schedule
    orig = Schedule.references

    def references(self, k, cuts):
        gap = a.gap if a.gap is not None else (self.ref_stride + 1) // 2
        return with_edges(self, k, cuts, orig(self, k, cuts), gap)
    Schedule.references = references


if __name__ == "__main__":
    import evaluate
    evaluate.main_patched(__doc__, add_args, install)
