#!/usr/bin/env python3
"""Export trained checkpoints to the ONNX graphs the plugin runs, and check ORT against torch.

    python scripts/export_models.py --icam runs/icam/last.pt --fcpm runs/fcpm/last.pt --out vsvitm/models
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from vsvitm.training.export import export_fcpm, export_icam  # noqa: E402
from vsvitm.training.fcpm_net import FCPM, FCPMConfig  # noqa: E402
from vsvitm.training.icam_net import ICAM, ICAMConfig  # noqa: E402


def load(path, cls, cfg_cls):
    st = torch.load(path, map_location="cpu", weights_only=False)
    m = cls(cfg_cls.from_dict(st["config"]) if hasattr(cfg_cls, "from_dict") else cfg_cls(**st["config"]))
    m.load_state_dict(st["model"])
    return m.eval(), st


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--icam", help="ICAM checkpoint")
    ap.add_argument("--fcpm", help="FCPM checkpoint")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "vsvitm" / "models"))
    ap.add_argument("--no-fp16", action="store_true")
    ap.add_argument("--evidence-gate", type=float,
                    help="FCPM merge: lower the fallback where reference evidence backs the keys, by this "
                         "strength (not learned; default: the checkpoint's, 0 = off). Needs ICAM graphs "
                         "from this version, which output the evidence")
    a = ap.parse_args(argv)
    out = Path(a.out)
    if a.icam:
        m, st = load(a.icam, ICAM, ICAMConfig)
        ps = export_icam(m, out, fp16=not a.no_fp16, meta={"trained_steps": st["step"], "exposure_norm": st.get("exposure_norm", True),
                                                          "checkpoint": Path(a.icam).as_posix()})
        print("ICAM:", ", ".join(f"{p.name} {p.stat().st_size / 1e6:.2f} MB" for p in ps))
    if a.fcpm:
        m, st = load(a.fcpm, FCPM, FCPMConfig)
        if a.evidence_gate is not None:
            m.cfg.evidence_gate = a.evidence_gate
        ps = export_fcpm(m, out, fp16=not a.no_fp16, meta={"trained_steps": st["step"], "checkpoint": Path(a.fcpm).as_posix()})
        print("FCPM:", ", ".join(f"{p.name} {p.stat().st_size / 1e6:.2f} MB" for p in ps))


if __name__ == "__main__":
    main()
