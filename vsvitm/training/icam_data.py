"""ICAM training samples: a key frame, up to N references at +-15*i, pre-flows and ground truth."""
from __future__ import annotations

import cv2
import numpy as np
import torch

from ..curves import overexposure_mask, to_linear
from ..flow import DISFlow, HomographyDIS, align_pair, warp_np
from ..prep import net_input


def reference_offsets(num_refs: int, ref_stride: int = 15) -> list[int]:
    """Reference order used at run time and in training: nearest first, past before future."""
    out = []
    for i in range(1, num_refs + 1):
        out += [-ref_stride * i, ref_stride * i]
    return out


def reference_offsets_inside(key: int, n_frames: int, ref_stride: int = 15) -> list[int]:
    """The run-time references of key (up to 6 each way, nearest first) that lie in 0..n_frames-1."""
    return [key + o for o in reference_offsets(6, ref_stride) if 0 <= key + o < n_frames]


def pick_key(rng: np.random.Generator, n_frames: int, n_refs: int, ref_stride: int = 15) -> tuple[int, list[int]]:
    """A key frame with at least n_refs run-time references inside the sequence, and those references.
    The first draw is uniform (as in every earlier run); a key too near an end for this many
    references (12 fit only mid-sequence) is drawn again among the positions that have them, rather
    than synthesising a new sequence."""
    key = int(rng.integers(0, n_frames))
    cands = reference_offsets_inside(key, n_frames, ref_stride)
    if len(cands) >= n_refs:
        return key, cands
    ok = [k for k in range(n_frames) if len(reference_offsets_inside(k, n_frames, ref_stride)) >= n_refs]
    if not ok:
        raise ValueError(f"{n_refs} references at stride {ref_stride} do not fit in {n_frames} frames: "
                         f"use --max-refs {len(reference_offsets_inside(n_frames // 2, n_frames, ref_stride))} or fewer")
    key = ok[int(rng.integers(len(ok)))]
    return key, reference_offsets_inside(key, n_frames, ref_stride)


def perturb_flow(flow: np.ndarray, rng: np.random.Generator, max_px: float = 12.0) -> np.ndarray:
    """flow + a smooth random displacement field (std. dev. up to max_px / 2): what a pre-flow looks like where DIS
    fails (parallax, large motion, occlusion). Taught with this, ICAM learns to correct small errors
    and to distrust a reference it cannot align, instead of pasting wrong pixels into the key."""
    h, w = flow.shape[:2]
    coarse = rng.normal(size=(int(rng.integers(2, 6)), int(rng.integers(2, 6)), 2)).astype(np.float32)
    field = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    return flow + field * np.float32(rng.uniform(1.0, max_px) / 2)


DARKER = 1.25  # a reference exposed this much darker than the key bounds its clipped radiance from below


def reference_informs(alpha_ref: np.ndarray, flow: np.ndarray, valid: np.ndarray, ratio: float) -> np.ndarray:
    """HxW in [0, 1]: where one reference tells more about the key's pixels than the key does.

    Pixel p (of the key) lands at p + flow in the reference; there the reference informs where it
    is unclipped (1 - its soft over-exposure mask alpha_ref, sampled there), or everywhere it lands
    when it is exposed at least DARKER times darker than the key (ratio = T_key / T_ref): then even
    its clipped pixels put the radiance above the key's clip level."""
    valid = valid.astype(np.float32)
    if ratio >= DARKER:
        return valid
    return valid * (1.0 - warp_np(np.ascontiguousarray(alpha_ref, np.float32), flow))


def make_sample(seq, key: int, refs: list[int], flow_fn: DISFlow, exposure_norm: bool = True,
                rng: np.random.Generator | None = None, p_bad_flow: float = 0.0, p_bad_ratio: float = 0.0) -> dict:
    """One training sample. With rng, a reference's pre-flow is perturbed with probability p_bad_flow
    and its exposure ratio mis-estimated by up to +-0.5 stop with probability p_bad_ratio.
    "blind" [1, H, W]: the product over references of 1 - reference_informs() (from the truth: flows,
    exposures), all ones without references. Where it is 1, no reference holds more than the key at that very
    pixel; vsvitm-train-icam --blind-weight keeps the single-frame guess there. That is too strict:
    references still help such pixels from their neighbours (BENCHMARKS.md)."""
    frames = seq.render([key] + refs)
    ldr = frames["ldr"].astype(np.float32) / 255.0
    lin_k = to_linear(ldr[0])
    out = {"key": net_input(ldr[0]), "hdr": frames["hdr"][0].transpose(2, 0, 1).astype(np.float32),
           "alpha": overexposure_mask(ldr[0]).transpose(2, 0, 1), "refs": [], "flows": [], "gt_flows": [], "gt_valid": []}
    blind = np.ones(lin_k.shape[:2], np.float32)
    for j, r in enumerate(refs):
        flow, e = align_pair(lin_k, to_linear(ldr[j + 1]), flow_fn, exposure_norm)
        if rng is not None and rng.random() < p_bad_flow:
            flow = perturb_flow(flow, rng)
        if rng is not None and rng.random() < p_bad_ratio:
            e = np.float32(e * 2.0 ** rng.uniform(-0.5, 0.5))
        out["refs"].append(net_input(ldr[j + 1], ratio=e))
        out["flows"].append(flow.transpose(2, 0, 1))
        gt, valid = seq.flow(key, r)
        out["gt_flows"].append(gt.transpose(2, 0, 1).astype(np.float32))
        out["gt_valid"].append(valid[None].astype(np.float32))
        blind *= 1.0 - reference_informs(overexposure_mask(ldr[j + 1])[..., 0], gt, valid,
                                         float(seq.exposure[key] / seq.exposure[r]))
    out["blind"] = blind[None]
    return out


def flatten_exposure(seq, key: int) -> None:
    """Every frame of `seq` exposed like frame `key` (a camera with locked exposure). Its references then hold no
    radiance the key clipped except what camera motion brings into view, and the ground truth, not a separate loss,
    teaches the network to leave such pixels to its single-frame guess (vsvitm-train-icam --flat-exposure; it
    does not cure roadtrip's reference loss)."""
    seq.exposure = np.full_like(seq.exposure, seq.exposure[key])


def drift_exposure(seq, key: int, rng: np.random.Generator, max_stops: float = 0.3) -> None:
    """Every frame of `seq` exposed within a small drift of frame `key`'s exposure: log2 T(t) = log2 T(key)
    + s1 (t - key) / 60 + s2 |t - key| / 60, with s1, s2 uniform in +-max_stops (a slow ramp and a bend, so references
    are a few per cent darker or brighter than the key). Why: roadtrip's references are 4-15 % darker or
    brighter than the key and clipped in the same sky, and each one pushes the network's guess up by 2-4 % in log. Training's auto-exposure events mostly change exposure by large steps, and
    --flat-exposure shows only ratios of exactly 1; this shows the small ratios in between
    (vsvitm-train-icam --near-exposure)."""
    s1, s2 = rng.uniform(-max_stops, max_stops, 2)
    d = np.arange(len(seq.exposure), dtype=np.float64) - key
    seq.exposure = (seq.exposure[key] * 2.0 ** (s1 * d / 60 + s2 * np.abs(d) / 60)).astype(seq.exposure.dtype)


class ICAMBatches(torch.utils.data.IterableDataset):
    """Endless batches; every batch shares one reference count. Deterministic for (seed, worker)."""

    def __init__(self, sources, batch: int, size: int, max_refs: int, seed: int, n_frames: int = 181,
                 ref_stride: int = 15, exposure_norm: bool = True, start_step: int = 0,
                 p_bad_flow: float = 0.0, p_bad_ratio: float = 0.0, video_weight: float | None = None,
                 knee: float = 0.0, p_parallax: float = 0.0, preflow: str = "fast", p_flat_exposure: float = 0.0,
                 p_near_exposure: float = 0.0, near_stops: float = 0.3, homography_preflow: bool = False):
        self.video_weight, self.knee, self.p_parallax = video_weight, knee, p_parallax
        self.p_flat_exposure = p_flat_exposure
        self.p_near_exposure, self.near_stops = p_near_exposure, near_stops
        # the training pre-flows' DIS preset, by name (flow.PRESETS); started from a feature homography as the plugin
        # starts them for an ICAM exported with --homography-preflow
        self.flow_fn = (HomographyDIS if homography_preflow else DISFlow)(preflow)
        self.sources, self.batch, self.size, self.max_refs = sources, batch, size, max_refs
        self.seed, self.n_frames, self.ref_stride = seed, n_frames, ref_stride
        self.exposure_norm, self.start_step = exposure_norm, start_step
        self.p_bad_flow, self.p_bad_ratio = p_bad_flow, p_bad_ratio

    def batch_at(self, step: int) -> dict:
        from .sources import pick_source
        from .synth import synth_sequence
        rng = np.random.default_rng([self.seed, step])
        n_refs = int(rng.integers(0, self.max_refs + 1))
        flow_fn = self.flow_fn
        samples = []
        while len(samples) < self.batch:
            src = pick_source(self.sources, rng, self.video_weight, self.knee)
            seed = int(rng.integers(2**31))
            # (no draw without parallax: earlier runs repeat)
            parallax = self.p_parallax > 0 and rng.random() < self.p_parallax
            seq = synth_sequence(src, self.n_frames, (self.size, self.size), seed=seed, parallax=parallax)
            key, cands = pick_key(rng, self.n_frames, n_refs, self.ref_stride)
            # (no draw without it: earlier runs repeat)
            if self.p_flat_exposure > 0 or self.p_near_exposure > 0:
                u = rng.random()   # one draw: the two shares never overlap
                if u < self.p_flat_exposure:
                    flatten_exposure(seq, key)
                elif u < self.p_flat_exposure + self.p_near_exposure:
                    drift_exposure(seq, key, rng, self.near_stops)
            # Mostly the run-time order (nearest first); sometimes a random subset, for robustness.
            refs = cands[:n_refs] if rng.random() < 0.5 else sorted(rng.choice(cands, n_refs, replace=False).tolist(), key=lambda r: abs(r - key))
            samples.append(make_sample(seq, key, refs, flow_fn, self.exposure_norm, rng, self.p_bad_flow,
                                       self.p_bad_ratio))
        coll = {k: torch.from_numpy(np.stack([s[k] for s in samples])) for k in ("key", "hdr", "alpha", "blind")}
        for k in ("refs", "flows", "gt_flows", "gt_valid"):
            coll[k] = [torch.from_numpy(np.stack([s[k][j] for s in samples])) for j in range(n_refs)]
        return coll

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        step = self.start_step + wid
        while True:
            yield self.batch_at(step)
            step += nw
