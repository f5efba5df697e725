#!/usr/bin/env python3
"""Ablations of the paper's Tables 2 (ICAM) and 3 (FCPM), as rows of one evaluation table.

Every variant starts from the trained weights (``--icam`` / ``--fcpm``) and is fine-tuned for
``--steps`` steps with one component switched off (train_icam.py / train_fcpm.py with ``--init``),
then exported and run through the plugin by ``scripts/evaluate.py`` on the development test set.
The reference row gets the same number of extra steps with nothing switched
off (the "(full)" rows), so all rows have seen the same training. Short runs: the table ranks components, it does not
replace full training of each variant.

    python scripts/ablations.py --stage icam --icam runs/icam_robust/last.pt --steps 100 --frames 12
    python scripts/ablations.py --stage fcpm --icam runs/icam_robust/last.pt --fcpm runs/fcpm/last.pt --steps 60

Resumable: finished fine-tunes and exports are reused. Results: OUT/eval_<stage>/results.md.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name -> training flags (Table 2: components of ICAM's reference step, added in the paper's order)
ICAM_VARIANTS = {
    "pre-flow only": ["--no-flow-correction", "--no-deformable", "--no-global", "--no-clue"],
    "+ corrected flow": ["--no-deformable", "--no-global", "--no-clue"],
    "+ deformable alignment": ["--no-global", "--no-clue"],
    "+ global aggregation (the paper's ICAM)": ["--no-clue"],
    "+ image-level clue (ours = full)": [],
    "full trained without exposure norm": ["--no-exposure-norm"],
}
# Table 3: which propagation directions the refinement uses
FCPM_VARIANTS = {
    "merge only (no propagation)": ["--no-forward", "--no-backward"],
    "forward": ["--no-backward"],
    "backward": ["--no-forward"],
    "bidirectional (full)": [],
}


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")[:40]


def run(cmd: list[str]):
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", choices=("icam", "fcpm"), required=True)
    ap.add_argument("--icam", default="runs/icam/last.pt", help="trained ICAM checkpoint")
    ap.add_argument("--fcpm", default="runs/fcpm/last.pt", help="trained FCPM checkpoint (--stage fcpm)")
    ap.add_argument("--steps", type=int, default=300, help="fine-tuning steps per variant")
    ap.add_argument("--out", default="runs/ablations")
    ap.add_argument("--data", default=None, help="training data (default: the train scripts' default)")
    ap.add_argument("--devset", default="data/devset")
    ap.add_argument("--frames", type=int, default=24, help="frames per development sequence")
    ap.add_argument("--train-args", default="--max-refs 4 --lr 1e-4 --bad-flow 0.3 --bad-ratio 0.2",
                    help="training flags shared by every ICAM variant (default: as the shipped model's last stage)")
    ap.add_argument("--sequences", default=None, help="comma-separated development sequences (default: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variants", default=None, help="comma-separated subset of variant names")
    a = ap.parse_args(argv)
    py = sys.executable
    out = Path(a.out)
    variants = ICAM_VARIANTS if a.stage == "icam" else FCPM_VARIANTS
    if a.variants:
        want = {v.strip() for v in a.variants.split(",")}
        variants = {k: v for k, v in variants.items() if k in want}
    data = ["--data", a.data] if a.data else []
    methods = []
    for name, flags in variants.items():
        d = out / a.stage / slug(name)
        onnx_dir = d / "onnx"
        if a.stage == "icam":
            # workers=0: the data comes from the training process itself (2 cores: no oversubscription)
            run([py, str(ROOT / "scripts/train_icam.py"), "--out", str(d), "--init", a.icam, "--steps", str(a.steps),
                 "--threads", str(a.threads), "--workers", "0", "--ckpt-every", "50", *a.train_args.split(), *data,
                 *flags])
            if not (onnx_dir / "icam.json").exists():
                run([py, str(ROOT / "scripts/export_models.py"), "--icam", str(d / "last.pt"), "--out", str(onnx_dir),
                     "--no-fp16"])
            kw = {"mode": "icam", "models": str(onnx_dir)}
            if "--no-exposure-norm" in flags:
                kw["exposure_norm"] = False
        else:
            run([py, str(ROOT / "scripts/train_fcpm.py"), "--out", str(d), "--icam", a.icam, "--init", a.fcpm,
                 "--steps", str(a.steps), "--threads", str(a.threads), "--workers", "1", "--ckpt-every", "20",
                 *data, *flags])
            if not (onnx_dir / "fcpm.json").exists():
                run([py, str(ROOT / "scripts/export_models.py"), "--icam", a.icam, "--fcpm", str(d / "last.pt"),
                     "--out", str(onnx_dir), "--no-fp16"])
            kw = {"models": str(onnx_dir)}
        methods.append((name, kw))
    # run-time-only rows on the shipped models: the same weights without the exposure normalisation
    if a.stage == "icam" and not a.variants:
        methods.append(("full without exposure norm at run time", {"mode": "icam", "exposure_norm": False}))
    cmd = [py, str(ROOT / "scripts/evaluate.py"), "--data", a.devset, "--frames", str(a.frames), "--no-cvvdp",
           "--out", str(out / f"eval_{a.stage}"), "--only", ",".join(n for n, _ in methods)]
    if a.sequences:
        cmd += ["--sequences", a.sequences]
    for n, kw in methods:
        cmd += ["--method", f"{n}:{json.dumps(kw)}"]
    run(cmd)


if __name__ == "__main__":
    main()
