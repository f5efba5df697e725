#!/usr/bin/env python3
"""Experiment (stop 20): the order in which ICAM adds a key frame's references.

    python scripts/ref_order_experiment.py --order far-first [--nearest N] -- <scripts/evaluate.py arguments>

e.g. `... --order far-first -- --data data/valset --no-cvvdp --only "ICAM only"`. Runs scripts/evaluate.py
with Engine.useful_refs wrapped so that the references it passes to ICAM come in another order:
  near-first  the plugin's order (nearest first, past before future), as trained;
  far-first   the same list reversed: the nearest references are added last.
--nearest N keeps only the N nearest references (after the gate), whatever the order.
Why: the shipped ICAM was trained with at most 4 references (`train_icam.py --max-refs 4`), the nearest
ones mostly, and the plugin gives it up to 12. Added one by one, the last steps shape the result most;
far-first lets the in-distribution nearest steps come last while the far ones still add evidence.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


def reorder(refs: list, order: str, nearest: int | None = None) -> list:
    """refs in the plugin's order (nearest first) -> the order asked for."""
    out = list(refs)[:nearest] if nearest is not None else list(refs)
    if order == "far-first":
        out.reverse()
    elif order != "near-first":
        raise ValueError(f"unknown order {order!r} (near-first, far-first)")
    return out


def add_args(ap):
    ap.add_argument("--order", choices=("near-first", "far-first"), required=True)
    ap.add_argument("--nearest", type=int, help="keep only this many nearest references")


def install(a):
    from vsvitm import engine
    orig = engine.Engine.useful_refs

    def useful(self, k, code_k, refs):
        return reorder(orig(self, k, code_k, refs), a.order, a.nearest)
    engine.Engine.useful_refs = useful


if __name__ == "__main__":
    import evaluate
    evaluate.main_patched(__doc__, add_args, install)
