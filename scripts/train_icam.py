#!/usr/bin/env python3
"""Train ICAM (stage 1) on synthetic LDR/HDR video made on the fly from ../shared/data.

Resumable (re-run the same command), seeded, logs to OUT/log.txt. Example (the shipped weights):
    python scripts/train_icam.py --out runs/icam --steps 3000
Ablations (paper Table 2): --no-flow-correction --no-deformable --no-global --no-exposure-norm
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
from vsvitm.flow import PRESETS  # noqa: E402
from vsvitm.training import (add_distill_args, add_source_and_loss_args, batch_loader, load_net, load_teacher,  # noqa: E402
                             pick_device, to_device)
from vsvitm.training.icam_data import ICAMBatches  # noqa: E402
from vsvitm.training.icam_net import ICAM, ICAMConfig, load_compatible  # noqa: E402
from vsvitm.training.losses import flow_l1, log_l1, log_l1_to  # noqa: E402
from vsvitm.training.prune import icam_groups, icam_widths, prune  # noqa: E402


def default_data() -> str | None:
    p = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return str(p) if p.exists() else None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=default_data(), help="HDR material root (default ../shared/data)")
    ap.add_argument("--out", default="runs/icam")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--size", type=int, default=128, help="crop size, a multiple of 64 (ICAM's modulus)")
    ap.add_argument("--max-refs", type=int, default=4)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--flow-weight", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto", help="auto (CUDA when torch sees a GPU, else CPU), cpu, cuda:N")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--workers", type=int, default=1, help="data worker processes")
    ap.add_argument("--ckpt-every", type=int, default=100)
    ap.add_argument("--init", help="start from these weights (a checkpoint .pt), e.g. for short ablation runs")
    ap.add_argument("--reset-head", action="store_true", help="zero the output conv of --init weights (restart from Y = f^-1(L))")
    ap.add_argument("--clipped-only", action="store_true",
                    help="pixel loss only where the key is really clipped (code >= 0.99), not on all of alpha > 0")
    ap.add_argument("--bad-flow", type=float, default=0.0,
                    help="probability that a reference's pre-flow is perturbed (teaches distrust of misalignment)")
    ap.add_argument("--bad-ratio", type=float, default=0.0,
                    help="probability that a reference's exposure ratio is off by up to +-0.5 stop")
    ap.add_argument("--no-flow-correction", action="store_true")
    ap.add_argument("--no-deformable", action="store_true")
    ap.add_argument("--no-global", action="store_true")
    ap.add_argument("--no-exposure-norm", action="store_true")
    ap.add_argument("--no-clue", action="store_true", help="without the image-level clue accumulation (ours)")
    ap.add_argument("--parallax", type=float, default=0.0,
                    help="probability that a still source gets a foreground layer moving against the background "
                         "(parallax and occlusion: references that no global alignment fits)")
    ap.add_argument("--preflow", choices=tuple(PRESETS), default="fast",
                    help="DIS preset of the training pre-flows (the shipped weights: fast; the plugin runs medium)")
    ap.add_argument("--homography-preflow", action="store_true",
                    help="start each pre-flow's DIS from the homography of ORB matches (flow.HomographyDIS), "
                         "as the plugin does for an ICAM exported with --homography-preflow (the shipped one)")
    ap.add_argument("--max-minutes", type=float, default=0.0,
                    help="stop (with a checkpoint) after this many minutes of training, e.g. on a lent GPU; "
                         "the cosine schedule is then fitted to the steps that fit in that time (rate of steps 10..60)")
    ap.add_argument("--snapshot-every", type=int, default=0, help="also keep the weights of every N-th step (step_N.pt)")
    ap.add_argument("--c1", type=int, default=ICAMConfig.c1,
                    help=f"channels of the 1/2-res features (default {ICAMConfig.c1}, the shipped width; most of a "
                         "reference step's cost)")
    ap.add_argument("--align", type=int, default=ICAMConfig.align,
                    help=f"channels of the flow-correction and offset nets (default {ICAMConfig.align})")
    ap.add_argument("--blind-weight", type=float, default=0.0,
                    help="weight of the distance, where no reference tells more than the key (icam_data.reference_informs), "
                         "to --blind-anchor's result without references: references that see nothing leave the guess alone")
    ap.add_argument("--blind-anchor", metavar="CKPT",
                    help="the frozen network whose single-frame result --blind-weight keeps (default: --init)")
    ap.add_argument("--flat-exposure", type=float, default=0.0, metavar="P",
                    help="probability that a training sequence keeps the key frame's exposure on every frame "
                         "(icam_data.flatten_exposure: references that see what the key sees, as in locked-exposure video)")
    ap.add_argument("--near-exposure", type=float, default=0.0, metavar="P",
                    help="probability that a training sequence's exposure only drifts slowly around the key frame's "
                         "(icam_data.drift_exposure: references a few per cent darker or brighter, as in roadtrip)")
    ap.add_argument("--near-stops", type=float, default=0.3, metavar="S",
                    help="--near-exposure's drift: up to S stops over 60 frames, each of a ramp and a bend")
    add_source_and_loss_args(ap)
    add_distill_args(ap)
    a = ap.parse_args(argv)
    if not 0.0 <= a.flat_exposure <= 1.0:
        ap.error(f"--flat-exposure is a probability: give a value in [0, 1], not {a.flat_exposure}")
    if not 0.0 <= a.near_exposure <= 1.0:
        ap.error(f"--near-exposure is a probability: give a value in [0, 1], not {a.near_exposure}")
    if a.flat_exposure + a.near_exposure > 1.0:
        ap.error("--flat-exposure and --near-exposure are shares of the same sequences: their sum must be at most 1")
    if a.blind_weight > 0 and not (a.blind_anchor or a.init):
        ap.error("--blind-weight needs --blind-anchor or --init (the network whose single-frame guess to keep)")
    if a.prune_from and a.init:
        ap.error("--prune-from starts the network from that checkpoint: give it without --init")
    if a.size < 64 or a.size % 64:
        ap.error(f"--size must be a positive multiple of 64 (ICAM works on 1/16 resolution in 4x4 windows), got {a.size}")
    if not 0 <= a.max_refs <= 12:
        ap.error(f"--max-refs must be 0..12 (the plugin's 6 each way at most), got {a.max_refs}")
    if not a.data or not Path(a.data).exists():
        ap.error("no data folder: pass --data DIR (a folder with hdr-stills/ and hdr-video/: docs/TRAINING.md)")
    if a.c1 < 1 or a.align < 1:
        ap.error("--c1 and --align must be positive")
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    dev = pick_device(a.device)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = ICAMConfig(c1=a.c1, align=a.align, flow_correction=not a.no_flow_correction, deformable=not a.no_deformable,
                     global_attention=not a.no_global, clue=not a.no_clue)
    wide = load_net(a.prune_from, ICAM, ICAMConfig) if a.prune_from else None
    if wide is not None:  # the pruned network is the wide one with fewer channels at 1/2 res
        cfg = dataclasses.replace(wide.cfg, c1=a.c1, align=a.align)
    model = ICAM(cfg).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, a.steps, eta_min=a.lr * 0.1)
    step = 0
    ckpt = out / "last.pt"
    if ckpt.exists():
        st = torch.load(ckpt, map_location="cpu", weights_only=False)
        model.load_state_dict(st["model"]); opt.load_state_dict(st["opt"]); sched.load_state_dict(st["sched"])
        step = st["step"]
        print(f"resumed from {ckpt} at step {step}", flush=True)
    elif a.init:
        st = torch.load(a.init, map_location="cpu", weights_only=False)
        fresh = load_compatible(model, st["model"])
        print(f"initialised from {a.init} (step {st.get('step')}); new or reshaped: {fresh}", flush=True)
    if step == 0 and (a.reset_head or not (a.init or a.prune_from)):  # start from Y = f^-1(L): the residual head at zero
        torch.nn.init.zeros_(model.d0[-1].weight)
        torch.nn.init.zeros_(model.d0[-1].bias)
    meta = {"config": cfg.to_dict(), "args": vars(a), "exposure_norm": not a.no_exposure_norm}
    (out / "config.json").write_text(json.dumps(meta, indent=1))

    from vsvitm.training.synth import load_sources
    sources = load_sources(a.data, split="train")
    print(f"{len(sources)} training sources", flush=True)
    ds = ICAMBatches(sources, a.batch, a.size, a.max_refs, a.seed, exposure_norm=not a.no_exposure_norm,
                     start_step=step, p_bad_flow=a.bad_flow, p_bad_ratio=a.bad_ratio,
                     video_weight=a.video_weight, knee=a.knee, p_parallax=a.parallax,
                     preflow=a.preflow, p_flat_exposure=a.flat_exposure,
                     p_near_exposure=a.near_exposure, near_stops=a.near_stops,
                     homography_preflow=a.homography_preflow)
    if a.homography_preflow:
        print(f"homography-started pre-flows ({a.preflow})", flush=True)
    if step == 0 and wide is not None:
        calib = [ds.batch_at(10**7 + i) for i in range(4)]  # steps no run reaches

        def feed(net):
            for b in calib:
                net(b["key"], b["refs"], b["flows"], log=True)
        keep = prune(wide, model, icam_groups(wide.cfg), icam_widths(cfg), feed)
        print(f"pruned from {a.prune_from}; kept channels: {keep}", flush=True)
    teacher = load_teacher(a, wide, ICAM, ICAMConfig, dev)
    anchor = load_net(a.blind_anchor or a.init, ICAM, ICAMConfig, dev) if a.blind_weight > 0 else None
    dl = batch_loader(ds, a.workers)
    log = open(out / "log.txt", "a")
    t0, avg = time.time(), None
    t_end = time.time() + a.max_minutes * 60 if a.max_minutes > 0 else float("inf")
    fit_at, t_fit = step + 60, None  # the rate is measured over steps +10..+60 (after start-up)
    model.train()
    for batch in dl:
        batch = to_device(batch, dev)
        if step >= a.steps:
            break
        logy, flows = model(batch["key"], batch["refs"], batch["flows"], log=True)
        w = batch["alpha"]
        if a.clipped_only:  # where the key holds no information, Y is all there is
            w = w * (batch["key"][:, :3].amax(1, keepdim=True) >= 0.99).float()
        lpix = log_l1(logy, batch["hdr"], w, a.overshoot)
        lflow = flow_l1(flows, batch["gt_flows"], batch["gt_valid"]) if cfg.flow_correction else torch.zeros(())
        loss = a.gt_weight * lpix + a.flow_weight * lflow
        ldist = torch.zeros(())
        if teacher is not None:
            with torch.no_grad():
                logt = teacher(batch["key"], batch["refs"], batch["flows"], log=True)[0]
            ldist = log_l1_to(logy, logt, w)
            loss = loss + a.distill * ldist
        lblind = torch.zeros(())
        if anchor is not None and batch["refs"]:
            with torch.no_grad():
                log0 = anchor(batch["key"], [], [], log=True)[0]
            lblind = log_l1_to(logy, log0, w * batch["blind"], norm=w)
            loss = loss + a.blind_weight * lblind
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step(); sched.step()
        step += 1
        if step == fit_at - 50:
            t_fit = time.time()
        vals = np.array([loss.item(), lpix.item(), float(lflow.detach()), ldist.item(), lblind.item()])
        avg = vals if avg is None else 0.98 * avg + 0.02 * vals
        if step % 10 == 0:
            rate = (time.time() - t0) / 10
            t0 = time.time()
            line = (f"step {step}/{a.steps} refs {len(batch['refs'])} loss {avg[0]:.4f} pix {avg[1]:.4f} "
                    f"flow {avg[2]:.3f} teacher {avg[3]:.4f} blind {avg[4]:.4f} lr {sched.get_last_lr()[0]:.2e} {rate:.2f}s/it eta {rate * (a.steps - step) / 60:.0f}min")
            print(line, flush=True)
            log.write(line + "\n"); log.flush()
        if a.max_minutes > 0 and step == fit_at:  # fit the cosine schedule to the time left, at the rate so far
            sched.T_max = a.steps = step + int((t_end - time.time()) / ((time.time() - t_fit) / 50))
            print(f"--max-minutes: schedule fitted to {a.steps} steps", flush=True)
        out_of_time = time.time() >= t_end
        if step % a.ckpt_every == 0 or step == a.steps or out_of_time:
            tmp = out / "last.pt.tmp"
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                        "step": step, "config": cfg.to_dict(), "exposure_norm": not a.no_exposure_norm}, tmp)
            tmp.replace(ckpt)
        if a.snapshot_every and step % a.snapshot_every == 0:
            torch.save({"model": model.state_dict(), "step": step, "config": cfg.to_dict(),
                        "exposure_norm": not a.no_exposure_norm}, out / f"step_{step}.pt")
        if out_of_time:
            print(f"stopped at step {step}: --max-minutes {a.max_minutes} reached (resume with the same command)", flush=True)
            break
    print("done", flush=True)


if __name__ == "__main__":
    main()
