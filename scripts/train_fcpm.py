#!/usr/bin/env python3
"""Train FCPM (stage 2) on synthetic video, with the frozen ICAM (trained first) making key results.

Resumable (re-run the same command), seeded, logs to OUT/log.txt. Example (the shipped weights):
    python scripts/train_fcpm.py --icam runs/icam/last.pt --out runs/fcpm --steps 800
Losses: alpha-weighted log-L1 on every frame of the run, plus a temporal term (frame-to-frame change
of the output against that of the ground truth). Ablations: --no-forward --no-backward.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from vsvitm.training import (add_distill_args, add_source_and_loss_args, batch_loader, load_net, load_teacher,  # noqa: E402
                             pick_device, to_device)
from vsvitm.training.fcpm_data import FCPMBatches, run_fcpm  # noqa: E402
from vsvitm.training.fcpm_net import EPS, FCPM, FCPMConfig  # noqa: E402
from vsvitm.training.nets_common import input_linear  # noqa: E402
from vsvitm.training.icam_net import ICAM, ICAMConfig  # noqa: E402
from vsvitm.training.losses import log_l1, log_l1_to  # noqa: E402
from vsvitm.training.prune import fcpm_groups, fcpm_widths, prune  # noqa: E402


def default_data() -> str | None:
    p = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return str(p) if p.exists() else None


def temporal_l1(y: torch.Tensor, hdr: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """|d/dt log Y - d/dt log H| where both frames are over-exposed ([T, B, C, H, W])."""
    ly, lh = torch.log(y + EPS), torch.log(hdr.clamp_min(0) + EPS)
    w = alpha[1:] * alpha[:-1]
    d = ((ly[1:] - ly[:-1]) - (lh[1:] - lh[:-1])).abs() * w
    return d.sum() / (3 * w.sum()).clamp_min(1.0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=default_data())
    ap.add_argument("--icam", default="runs/icam/last.pt", help="trained ICAM checkpoint (frozen)")
    ap.add_argument("--out", default="runs/fcpm")
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--size", type=int, default=128, help="crop size, a multiple of 64 (ICAM's modulus)")
    ap.add_argument("--run", type=int, default=6, help="frames per training chunk")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--temporal-weight", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto", help="auto (CUDA when torch sees a GPU, else CPU), cpu, cuda:N")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--ckpt-every", type=int, default=50)
    ap.add_argument("--init", help="start from these FCPM weights (a checkpoint .pt), e.g. for short ablation runs")
    ap.add_argument("--no-forward", action="store_true")
    ap.add_argument("--no-backward", action="store_true")
    ap.add_argument("--no-fallback", action="store_true",
                    help="merge only key results (the paper), without f^-1(L) of the frame as a candidate")
    ap.add_argument("--flow-cue", action="store_true",
                    help="the mask net also sees each key's pre-flow magnitude (tried, not shipped: BENCHMARKS.md)")
    ap.add_argument("--agree-cue", action="store_true",
                    help="the mask net also sees how far each warped key result is from the keys' mean")
    ap.add_argument("--evidence-gate", type=float, default=0.0,
                    help="train with the merge's evidence gate on (not learned; the shipped merge uses it at "
                         "export: scripts/export_models.py --evidence-gate)")
    ap.add_argument("--bad-flow", type=float, default=0.0,
                    help="probability of perturbing a key's pre-flow (teaches the merge to reject misaligned keys)")
    ap.add_argument("--init-correction", metavar="CKPT",
                    help="start the merge's flow-correction net from this FCPM checkpoint (same --corr; its width does not "
                         "depend on --hidden/--mask-ch), the rest from scratch: for networks of another width")
    ap.add_argument("--hidden", type=int, default=FCPMConfig.hidden,
                    help=f"recurrent state channels (default {FCPMConfig.hidden}, the shipped width)")
    ap.add_argument("--mask-ch", type=int, default=FCPMConfig.mask_ch,
                    help=f"channels of the merge's mask branches (default {FCPMConfig.mask_ch})")
    ap.add_argument("--corr", type=int, default=FCPMConfig.corr,
                    help=f"channels of the merge's flow-correction net (default {FCPMConfig.corr})")
    add_source_and_loss_args(ap)
    add_distill_args(ap)
    a = ap.parse_args(argv)
    if a.prune_from and (a.init or a.init_correction):
        ap.error("--prune-from starts the network from that checkpoint: give it without --init/--init-correction")
    if a.hidden < 1 or a.mask_ch < 1 or a.corr < 1:
        ap.error("--hidden, --mask-ch and --corr must be positive")
    if a.size < 64 or a.size % 64:
        ap.error(f"--size must be a positive multiple of 64 (ICAM works on 1/16 resolution in 4x4 windows), got {a.size}")
    if not a.data or not Path(a.data).exists():
        ap.error("no data folder: pass --data DIR")
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    dev = pick_device(a.device)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    icam = load_net(a.icam, ICAM, ICAMConfig)
    cfg = FCPMConfig(hidden=a.hidden, mask_ch=a.mask_ch, corr=a.corr, forward=not a.no_forward, backward=not a.no_backward, fallback=not a.no_fallback,
                     flow_cue=a.flow_cue, agree_cue=a.agree_cue, evidence_gate=a.evidence_gate)
    wide = load_net(a.prune_from, FCPM, FCPMConfig) if a.prune_from else None
    if wide is not None:  # the pruned network is the wide one at the widths asked
        cfg = dataclasses.replace(wide.cfg, hidden=a.hidden, mask_ch=a.mask_ch, corr=a.corr)
    model = FCPM(cfg).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, a.steps, eta_min=a.lr * 0.1)
    step = 0
    ckpt = out / "last.pt"
    if ckpt.exists():
        s = torch.load(ckpt, map_location="cpu", weights_only=False)
        model.load_state_dict(s["model"]); opt.load_state_dict(s["opt"]); sched.load_state_dict(s["sched"])
        step = s["step"]
        print(f"resumed from {ckpt} at step {step}", flush=True)
    elif a.init:
        model.load_compatible(torch.load(a.init, map_location="cpu", weights_only=False)["model"])
        print(f"initialised from {a.init}", flush=True)
    elif a.init_correction:
        theirs = torch.load(a.init_correction, map_location="cpu", weights_only=False)["model"]
        model.correct.load_state_dict({k[len("correct."):]: v for k, v in theirs.items() if k.startswith("correct.")})
        print(f"flow correction initialised from {a.init_correction}", flush=True)
    (out / "config.json").write_text(json.dumps({"config": cfg.to_dict(), "args": vars(a)}, indent=1))
    from vsvitm.training.synth import load_sources
    sources = load_sources(a.data, split="train")
    ds = FCPMBatches(sources, icam, a.batch, a.size, a.run, a.seed, start_step=step,
                     video_weight=a.video_weight, knee=a.knee, p_bad_flow=a.bad_flow)
    if step == 0 and wide is not None:
        calib = [ds.batch_at(10**7 + i) for i in range(2)]  # steps no run reaches
        keep = prune(wide, model, fcpm_groups(wide.cfg), fcpm_widths(cfg),
                     lambda net: [run_fcpm(net, b) for b in calib])
        print(f"pruned from {a.prune_from}; kept channels: {keep}", flush=True)
    teacher = load_teacher(a, wide, FCPM, FCPMConfig, dev)
    dl = batch_loader(ds, a.workers)
    log = open(out / "log.txt", "a")
    t0, avg = time.time(), None
    for b in dl:
        b = to_device(b, dev)
        if step >= a.steps:
            break
        logy = run_fcpm(model, b, log=True)
        lin = input_linear(b["cur"].flatten(0, 1)).view_as(b["hdr"])
        outp = (1 - b["alpha"]) * lin + b["alpha"] * (torch.exp(logy) - EPS).clamp_min(0)
        lpix = log_l1(logy, b["hdr"], b["alpha"], a.overshoot)
        ltmp = temporal_l1(outp, b["hdr"], b["alpha"])
        loss = a.gt_weight * lpix + a.temporal_weight * ltmp
        ldist = torch.zeros(())
        if teacher is not None:
            with torch.no_grad():
                logt = run_fcpm(teacher, b, log=True)
            ldist = log_l1_to(logy, logt, b["alpha"])
            loss = loss + a.distill * ldist
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step(); sched.step()
        step += 1
        vals = np.array([loss.item(), lpix.item(), ltmp.item(), ldist.item()])
        avg = vals if avg is None else 0.95 * avg + 0.05 * vals
        if step % 5 == 0:
            rate = (time.time() - t0) / 5
            t0 = time.time()
            line = (f"step {step}/{a.steps} loss {avg[0]:.4f} pix {avg[1]:.4f} temporal {avg[2]:.4f} teacher {avg[3]:.4f} "
                    f"{rate:.2f}s/it eta {rate * (a.steps - step) / 60:.0f}min")
            print(line, flush=True)
            log.write(line + "\n"); log.flush()
        if step % a.ckpt_every == 0 or step == a.steps:
            tmp = out / "last.pt.tmp"
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                        "step": step, "config": cfg.to_dict()}, tmp)
            tmp.replace(ckpt)
    print("done", flush=True)


if __name__ == "__main__":
    main()
