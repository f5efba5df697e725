"""FCPM: Feature and Clue Propagation Module (paper §3.4), in torch.

Exported as four graphs the plugin drives:
  merge(cur, keys, ys, preflows, valid) -> xhat   warp the K nearest key results to frame t with
                                                  corrected flow and combine them with predicted masks (eq. 9)
  back(x, cur, xn, h, flow) -> h                  backward recurrent step (eq. 10)
  fwd(x, cur, xn, h, flow) -> h                   forward recurrent step (eq. 11)
  fuse(hf, hb, x, cur) -> y                       residual from both directions added to xhat (eq. 12)
HDR values travel in the log domain x = log(Y + EPS); `cur` is the frame's 4-channel input (prep.py).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .nets_common import EPS, act, conv, downflow, from_log, input_linear, up2, warp

MODULUS = 8


@dataclass
class FCPMConfig:
    keys: int = 5
    hidden: int = 16
    mask_ch: int = 16
    corr: int = 16            # channels of the merge's flow-correction net (1/2 res, once per key)
    flow_correction: bool = True
    forward: bool = True      # ablations (paper Table 3): propagation directions
    backward: bool = True
    # ours: f^-1(L) of frame t is one more candidate in the merge softmax, so where no key result
    # can be aligned (parallax, occlusion) the merge falls back to the frame itself instead of
    # pasting misplaced highlights
    fallback: bool = True
    # ours: the mask net also sees each key's pre-flow magnitude, log(1 + |flow| px). Inside a large
    # clipped region every warped key matches frame t (all read 1.0), so the match feature cannot
    # tell a key that is frame t itself (zero flow, exact) from one carried over a long, uncertain
    # motion; the fallback model falls back to f^-1(L) there even on key frames. Off by default: a
    # 600-step fine-tune with it did not stop that (BENCHMARKS.md, "Tried and not kept")
    flow_cue: bool = False
    # ours: ... and how far each warped key result is from the others' mean (valid keys, log
    # domain, 1/2 res). Keys aligned to the right pixels agree even where frame t is clipped; a key
    # moved by a wrong flow (parallax, occlusion) lands other content and disagrees
    agree_cue: bool = False
    # ours: > 0 lowers the fallback's logit by strength * -log(1 - c), c = how much reference evidence
    # (ICAM's clue weight, warped like the key results) backs the keys the merge would otherwise use.
    # The fallback exists for keys that are misplaced or only guessed from one frame; where a
    # reference saw the region unclipped, the key result is measured, not guessed (not learned: no weights)
    evidence_gate: float = 0.0

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FCPMConfig":
        """From a checkpoint's config; checkpoints from before the fallback candidate had none."""
        return cls(**{"fallback": False, "flow_cue": False, "agree_cue": False, "evidence_gate": 0.0, **d})


def enc(y: torch.Tensor) -> torch.Tensor:
    return torch.log(y.clamp_min(0) + EPS)


def _softmax_exp(x: torch.Tensor, dim: int) -> torch.Tensor:
    """softmax written as exp / sum: ONNX Runtime's CPU Softmax over the channel axis of an NCHW
    tensor transposes it to the last axis and back."""
    e = torch.exp(x - x.amax(dim, keepdim=True))
    return e / e.sum(dim, keepdim=True)


class CombineMask(nn.Module):
    """Combination masks' logits from local, dilated and global branches (ExpandNet-like); FCPM._masks
    applies the evidence gate and the softmax over the candidates."""

    def __init__(self, cin: int, k: int, c: int):
        super().__init__()
        self.local = nn.Sequential(conv(cin, c), act(), conv(c, c), act())
        self.dilated = nn.Sequential(conv(cin, c, dilation=2), act(), conv(c, c, dilation=4), act())
        self.glob = nn.Sequential(conv(cin, c, 3, 2), act(), conv(c, c, 3, 2), act())
        self.glob_fc = nn.Sequential(nn.Linear(c, c), act())
        self.out = conv(3 * c, k, 1)

    def logits(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        g = self.glob(x).mean(dim=(2, 3))
        g = self.glob_fc(g)[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])
        return self.out(torch.cat([self.local(x), self.dilated(x), g], 1)) + (valid - 1.0) * 1e4


class Propagate(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.body = nn.Sequential(conv(3 + 4 + 3 + hidden, hidden), act(), conv(hidden, hidden), act(),
                                  conv(hidden, hidden), act())

    def forward(self, x, cur, xn, h, flow):
        return self.step(x, cur, xn, warp(h, flow))

    def step(self, x, cur, xn, hw):
        """The step after the state's warp: hw = warp(h, flow), made outside the graph (engine, CPU)."""
        return self.body(torch.cat([x, cur, xn, hw], 1))


class FCPM(nn.Module):
    def __init__(self, cfg: FCPMConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or FCPMConfig()
        self.correct = nn.Sequential(conv(8, cfg.corr), act(), conv(cfg.corr, cfg.corr), act(), conv(cfg.corr, 2))
        self.mask = CombineMask(4 + cfg.keys * (4 + cfg.flow_cue + cfg.agree_cue), cfg.keys + cfg.fallback, cfg.mask_ch)
        self.prop_b = Propagate(cfg.hidden)
        self.prop_f = Propagate(cfg.hidden)
        self.fuse_net = nn.Sequential(conv(2 * cfg.hidden + 3 + 4, cfg.hidden), act(), conv(cfg.hidden, 3))

    def merge(self, cur, keys, ys, preflows, valid, evidence=None):
        """evidence (with cfg.evidence_gate): [B, K, H, W], each key result's reference evidence in [0, 1)."""
        k = self.cfg.keys
        gate = self.cfg.evidence_gate > 0 and self.cfg.fallback
        if gate and evidence is None:
            raise ValueError("FCPM.merge: evidence_gate needs the keys' evidence maps")
        cur2 = F.avg_pool2d(cur, 2)
        # the mask net's features are pooled to 1/2 res one by one as they are made (pooling is per
        # channel, so this equals pooling their concatenation): at 1080p the full-res feature stack
        # and its pieces were ~190 of the graph's ~470 bytes per pixel
        warped, feats, cues, pooled, ev = [], [cur2], [], [], []
        for j in range(k):
            key_j = keys[:, 4 * j: 4 * j + 4]
            flow = preflows[:, 2 * j: 2 * j + 2]
            if self.cfg.flow_cue:
                cues.append(F.avg_pool2d(torch.log1p(torch.sqrt((flow * flow).sum(1, keepdim=True) + 1e-6) - 1e-3), 2))
            if self.cfg.flow_correction:
                flow = self._corrected(cur2, key_j, flow)
            wy = warp(enc(ys[:, 3 * j: 3 * j + 3]), flow)
            wk = warp(key_j, flow)
            if gate:
                ev.append(F.avg_pool2d(warp(evidence[:, j: j + 1], flow), 2))
            self._add_key(warped, feats, pooled, wy, wk[:, :3], cur)
        return self._combine(cur, warped, feats, cues, pooled, valid, (lambda: torch.cat(ev, 1)) if gate else None)

    # The merge in parts around its warps, so that the plugin can warp on the CPU with OpenCV
    # (graphs fcpm_merge_correct / fcpm_merge_mix; the warps were ~55 % of the merge in ONNX Runtime):
    # `correction` gives each key's flow correction, the plugin warps, `merge_mix` mixes. The same
    # computation as `merge`, which stays one loop over the keys because each key's warped pieces are
    # pooled and dropped as they are made: the one-graph merge's memory at 1080p (a version of `merge`
    # written in these parts kept all warped keys at once and raised a 1080p render's peak RSS by ~0.8 GB).
    def merge_mix(self, cur, wys, wkeys, valid, wev=None):
        """X^ from the warped key results (enc domain, [B, 3K]), the warped key frames' first three
        input channels ([B, 3K]) and, with the evidence gate, the warped evidence ([B, K]). Not for
        cfg.flow_cue, whose cue is the uncorrected flow (export_fcpm keeps the one-graph merge then).
        `merge`'s computation written for ONNX Runtime's CPU provider: all keys at once (full-res
        slices per key were Split copies of ~30 MB a 512x512 frame) and the softmax as exp / sum
        (its Softmax over channels transposes): 75 -> 54 ms per 512x512 frame in a render
        (BENCHMARKS.md). Same values."""
        if self.cfg.flow_cue:
            raise ValueError("FCPM.merge_mix: a model with the flow cue merges in one graph (FCPM.merge)")
        b, k, (h, w) = cur.shape[0], self.cfg.keys, cur.shape[-2:]
        gate = self.cfg.evidence_gate > 0 and self.cfg.fallback
        pw = F.avg_pool2d(wys, 2)  # = each key's pooled result, as _add_key makes it
        match = F.avg_pool2d((wkeys.reshape(b, k, 3, h, w) - cur[:, None, :3]).abs().mean(2), 2)
        feats = [F.avg_pool2d(cur, 2)]
        for j in range(k):  # the mask net's input order: per key, pooled result / 4, then its match
            feats += [pw[:, 3 * j: 3 * j + 3] / 4, match[:, j: j + 1]]
        pooled = [pw[:, 3 * j: 3 * j + 3] for j in range(k)]
        m = up2(self._masks(feats, [], pooled, valid, (lambda: F.avg_pool2d(wev, 2)) if gate else None, _softmax_exp))
        y = (m[:, :k, None] * wys.reshape(b, k, 3, h, w)).sum(1)
        return y + m[:, k:] * enc(input_linear(cur)) if self.cfg.fallback else y

    def correction(self, x):
        """The flow correction alone, from [frame t, the key warped by its pre-flow] at 1/2 res (8
        channels, one key per batch item): graph fcpm_merge_correct. The plugin's CPU path does
        _corrected's pooling, warp and upsampling around it with OpenCV (engine.Engine._merge_flows_cv):
        in one graph for all keys (fcpm_merge_flows, the older format) ONNX Runtime spent ~2/3 of the
        time on those, not on the convolutions."""
        return self.correct(x)

    def _corrected(self, cur2, key_j, flow):
        """A key's pre-flow to frame t plus the learned correction (from 1/2-res frame t and warped key)."""
        f2 = downflow(flow, 2)
        d = self.correct(torch.cat([cur2, warp(F.avg_pool2d(key_j, 2), f2)], 1))
        return flow + 2 * up2(d)

    @staticmethod
    def _add_key(warped, feats, pooled, wy, wk_rgb, cur):
        """One key's warped result joins the mix; the mask net sees it at 1/2 res and how well the
        warped key frame matches frame t (pooled as made: see merge)."""
        warped.append(wy)
        pooled.append(F.avg_pool2d(wy, 2))
        feats += [pooled[-1] / 4, F.avg_pool2d((wk_rgb - cur[:, :3]).abs().mean(1, keepdim=True), 2)]

    def _combine(self, cur, warped, feats, cues, pooled, valid, evidence_half):
        """The merge after the warps: the masks (_masks) and the mix of the warped key results and,
        with the fallback, f^-1(L) of frame t."""
        if self.cfg.fallback:
            warped.append(enc(input_linear(cur)))
        # masks are predicted at 1/2 resolution (cost) and upsampled
        m = up2(self._masks(feats, cues, pooled, valid, evidence_half))
        return sum(m[:, j: j + 1] * w for j, w in enumerate(warped))

    def _masks(self, feats, cues, pooled, valid, evidence_half, softmax=torch.softmax):
        """The mix's weights at 1/2 res (K keys, then the f^-1(L) fallback): agreement cues, the mask
        net (with the evidence gate when evidence_half, a function giving the keys' warped evidence
        at 1/2 res), softmax over the candidates."""
        k = self.cfg.keys
        if self.cfg.agree_cue:
            mean = sum(valid[:, j: j + 1] * p for j, p in enumerate(pooled)) / valid.sum(1, keepdim=True).clamp_min(1.0)
            cues = cues + [(p - mean).abs().mean(1, keepdim=True) for p in pooled]
        if self.cfg.fallback:
            valid = torch.cat([valid, torch.ones_like(valid[:, :1])], 1)
        # the cue channels come last so that a model trained without them loads as a leading slice
        # (load_compatible)
        logits = self.mask.logits(torch.cat(feats + cues, 1), valid)
        if evidence_half is not None:
            # evidence of the key mixture the merge would use without the fallback
            c = (softmax(logits[:, :k], 1) * evidence_half()).sum(1, keepdim=True)
            fb = logits[:, k:] + self.cfg.evidence_gate * torch.log1p(-c.clamp(0.0, 0.999))
            logits = torch.cat([logits[:, :k], fb], 1)
        return softmax(logits, 1)

    def load_compatible(self, state: dict, fallback_bias: float = -2.0) -> None:
        """Load weights of a model without the fallback candidate into one with it: the mask head
        gets one more output, starting with zero weights and a low bias (rarely chosen at first).
        Likewise without the flow/agreement cues: their input channels start with zero weights (ignored)."""
        state = dict(state)
        for name in ("mask.local.0.weight", "mask.dilated.0.weight", "mask.glob.0.weight"):
            own = getattr(self.mask, name.split(".")[1])[0].weight
            if state[name].shape[1] < own.shape[1]:
                t = torch.zeros_like(own.detach())
                t[:, : state[name].shape[1]] = state[name]
                state[name] = t
        w = "mask.out.weight"
        if self.cfg.fallback and state[w].shape[0] == self.cfg.keys:
            new_w, new_b = self.mask.out.weight.detach().clone(), self.mask.out.bias.detach().clone()
            new_w[: self.cfg.keys], new_b[: self.cfg.keys] = state[w], state["mask.out.bias"]
            new_w[self.cfg.keys:], new_b[self.cfg.keys:] = 0.0, fallback_bias
            state[w], state["mask.out.bias"] = new_w, new_b
        self.load_state_dict(state)

    def back(self, x, cur, xn, h, flow):
        return self.prop_b(x, cur, xn, h, flow)

    def fwd(self, x, cur, xn, h, flow):
        return self.prop_f(x, cur, xn, h, flow)

    # The same steps without the state's warp (graphs fcpm_back_cpu / fcpm_fwd_cpu): on the CPU the
    # engine warps the 16-channel state with OpenCV, ~6x faster than ONNX Runtime's GridSample.
    def back_prewarped(self, x, cur, xn, hw):
        return self.prop_b.step(x, cur, xn, hw)

    def fwd_prewarped(self, x, cur, xn, hw):
        return self.prop_f.step(x, cur, xn, hw)

    def fuse_log(self, hf, hb, x, cur):
        """log(Y + EPS): the merged frame plus the refinement residual (what training sees, unclamped,
        so the gradient never vanishes where the result would fall below f^-1(L))."""
        if not self.cfg.forward:
            hf = torch.zeros_like(hf)
        if not self.cfg.backward:
            hb = torch.zeros_like(hb)
        return x + self.fuse_net(torch.cat([hf, hb, x, cur], 1))

    def fuse(self, hf, hb, x, cur):
        return from_log(self.fuse_log(hf, hb, x, cur), input_linear(cur))
