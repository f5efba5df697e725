"""Rebuild torch checkpoints from exported ONNX graphs, to fine-tune the shipped models
(vsvitm-checkpoint-from-onnx).

    vsvitm-checkpoint-from-onnx --out runs/shipped     # -> runs/shipped/icam.pt, fcpm.pt
    vsvitm-train-icam --init runs/shipped/icam.pt ...

A fresh clone has the shipped ONNX files but not the training runs (runs/ is not committed). The
rebuilt network is checked against ONNX Runtime on a random input before it is written.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from ..checkout import MODELS, REPO
from .export import checkpoint_from_models


def check_icam(st: dict, models: Path) -> float:
    """Largest log difference between the rebuilt ICAM and the ONNX graphs on a random input.

    st: the rebuilt checkpoint.
    models: the folder of the graphs.
    """
    import onnxruntime as ort

    from .icam_net import ICAM, ICAMConfig
    m = ICAM(ICAMConfig.from_dict(st["config"])).eval()
    m.load_state_dict(st["model"])
    g = torch.Generator().manual_seed(0)
    key, ref = torch.rand(1, 4, 128, 128, generator=g), torch.rand(1, 4, 128, 128, generator=g)
    pf = torch.randn(1, 2, 128, 128, generator=g)
    with torch.no_grad():
        fl, gg = m.init(key)
        fl, gg, _ = m.ref_step(fl, gg, ref, pf)
        y = m.decode(key, fl, gg).numpy()
    s = {n: ort.InferenceSession(str(models / f"icam_{n}.onnx"), providers=["CPUExecutionProvider"])
         for n in ("init", "ref", "decode")}
    ofl, og = s["init"].run(None, {"key": key.numpy()})
    ofl, og, _ = s["ref"].run(None, {"fl": ofl, "g": og, "ref": ref.numpy(), "preflow": pf.numpy()})
    oy = s["decode"].run(None, {"key": key.numpy(), "fl": ofl, "g": og})[0]
    return float(np.abs(np.log(oy + 1e-3) - np.log(y + 1e-3)).max())


def check_fcpm(st: dict, models: Path) -> float:
    """Largest difference between the rebuilt FCPM merge and fcpm_merge.onnx on a random input.

    st: the rebuilt checkpoint.
    models: the folder of the graphs.
    """
    import onnxruntime as ort

    from .fcpm_net import FCPM, FCPMConfig
    m = FCPM(FCPMConfig.from_dict(st["config"])).eval()
    m.load_state_dict(st["model"])
    k = m.cfg.keys
    g = torch.Generator().manual_seed(0)
    ins = {"cur": torch.rand(1, 4, 64, 64, generator=g), "keys": torch.rand(1, 4 * k, 64, 64, generator=g),
           "ys": torch.rand(1, 3 * k, 64, 64, generator=g) * 4, "preflows": torch.randn(1, 2 * k, 64, 64, generator=g),
           "valid": torch.ones(1, k, 1, 1)}
    if m.cfg.evidence_gate > 0 and m.cfg.fallback:  # the gated merge also reads the keys' evidence
        ins["evidence"] = torch.rand(1, k, 64, 64, generator=g)
    with torch.no_grad():
        x = m.merge(*ins.values()).numpy()
    s = ort.InferenceSession(str(models / "fcpm_merge.onnx"), providers=["CPUExecutionProvider"])
    ox = s.run(None, {n: v.numpy() for n, v in ins.items()})[0]
    return float(np.abs(ox - x).max())


def main(argv=None) -> int:
    """Entry point of vsvitm-checkpoint-from-onnx: exit status 1 where torch and ONNX Runtime differ.

    argv: command-line arguments (None: sys.argv[1:]).
    """
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=Path, default=MODELS)
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "shipped")
    ap.add_argument("--tol", type=float, default=1e-3)
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    for which, check in (("icam", check_icam), ("fcpm", check_fcpm)):
        st = checkpoint_from_models(a.models, which)
        err = check(st, a.models)
        if not err <= a.tol:
            print(f"{which}: torch and ONNX Runtime differ by {err:.3g} (> {a.tol}); not written", file=sys.stderr)
            return 1
        torch.save(st, a.out / f"{which}.pt")
        print(f"{which}: {a.out / (which + '.pt')} (step {st['step']}; max abs diff vs ORT {err:.2g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
