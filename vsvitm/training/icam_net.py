"""ICAM: Incremental Clue Aggregation Module (paper §3.3), in torch.

The network is split in three graphs so that references can be added one at a time at run time
(0 to any number), exactly as in training:
  init(key)                        -> state (Fl: local features at 1/2 res, G: global at 1/16 res)
  ref_step(state, ref, preflow)    -> state' (+ corrected flow, for the flow loss)
  decode(key, state)               -> Y (linear HDR, 1.0 = key's clip level, Y >= f^-1(L))

Image inputs are 4 channels: exposure-aligned gamma-encoded values (lin ** (1/2.2); for a reference
brought to the key's exposure these exceed 1 where the reference saw what the key clipped) and the
soft over-exposure mask of that frame. Sizes must be multiples of MODULUS (the plugin pads).
"""
from __future__ import annotations

from dataclasses import dataclass, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F

from .nets_common import EPS, DenseBlock, act, conv, downflow, from_log, input_linear, inside, up2, warp

MODULUS = 64  # 1/16 resolution, then 4x4-token attention windows
CLUE_IN = 4      # decoder inputs from the clue: mean log gain (3) and confidence (1)
CLUE_STATE = 16  # full-res (sum w*log v, sum w) = 4 channels, pixel_unshuffled by 2
# with cfg.clue_transfer_spread: the transfer's own accumulator, full-res (sum w*log v 3, sum w 1, M2 of log v 3,
# 1 unused) = 8 channels, unshuffled: only samples that land inside the reference count (ICAM.transfer)
CLUE_SPREAD_STATE = 32


@dataclass
class ICAMConfig:
    c1: int = 24          # 1/2 res (local alignment level)
    c2: int = 32          # 1/4
    c3: int = 48          # 1/8
    c4: int = 64          # 1/16 (global aggregation level)
    offsets: int = 4      # deformable sampling points per pixel
    align: int = 32       # channels of the flow-correction and offset nets (1/2 res)
    window: int = 4       # attention window, in 1/16-res tokens
    heads: int = 2
    flow_correction: bool = True   # ablation switches (paper Table 2)
    deformable: bool = True
    global_attention: bool = True
    clue: bool = True              # image-level clue accumulation (ours; see ICAM.ref_step)
    # clue transfer in decode (ours; not learned, 0 = off): the key's clipped channels are
    # raised towards the clue's weighted mean where its weight sum passes clue_transfer (full at 2x)
    # and the mean is above clue_transfer_level (x the key's clip level, full 0.05 above). See ICAM.transfer.
    clue_transfer: float = 0.0
    clue_transfer_level: float = 1.05
    # ... and only where the references agree: the weighted spread (std) of their log radiance is below
    # this (full below it, none at 2x). > 0 also gives the transfer its own sums in the state
    # (CLUE_SPREAD_STATE), from samples that land inside the references only.
    clue_transfer_spread: float = 0.0

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ICAMConfig":
        """From a checkpoint's config; checkpoints from before the clue path had none."""
        return cls(**{"clue": False, **d})


class Encoder(nn.Module):
    def __init__(self, cfg: ICAMConfig):
        super().__init__()
        self.e1 = nn.Sequential(conv(4, cfg.c1, 3, 2), act(), conv(cfg.c1, cfg.c1), act())
        self.e2 = nn.Sequential(conv(cfg.c1, cfg.c2, 3, 2), act(), conv(cfg.c2, cfg.c2), act())
        self.e3 = nn.Sequential(conv(cfg.c2, cfg.c3, 3, 2), act(), conv(cfg.c3, cfg.c3), act())
        self.e4 = nn.Sequential(conv(cfg.c3, cfg.c4, 3, 2), act(), conv(cfg.c4, cfg.c4), act())

    def deep(self, fl: torch.Tensor):
        s2 = self.e2(fl)
        s3 = self.e3(s2)
        return s2, s3, self.e4(s3)


class WindowCrossAttention(nn.Module):
    """Swin-style windowed attention: queries from the key's tokens, keys/values from key + reference."""

    def __init__(self, c: int, window: int, heads: int):
        super().__init__()
        self.window, self.heads = window, heads
        self.norm_q = nn.LayerNorm(c)
        self.norm_kv = nn.LayerNorm(c)
        self.q = nn.Linear(c, c)
        self.kv = nn.Linear(c, 2 * c)
        self.proj = nn.Linear(c, c)
        self.norm_mlp = nn.LayerNorm(c)
        self.mlp = nn.Sequential(nn.Linear(c, 2 * c), nn.GELU(), nn.Linear(2 * c, c))

    def _windows(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        ws = self.window
        x = x.reshape(b, c, h // ws, ws, w // ws, ws).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(-1, ws * ws, c)  # [B*nW, ws*ws, C]

    def forward(self, g: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        b, c, h, w = g.shape
        ws, nh = self.window, self.heads
        tq = self._windows(g)
        tkv = torch.cat([tq, self._windows(r)], 1)
        q = self.q(self.norm_q(tq))
        k, v = self.kv(self.norm_kv(tkv)).chunk(2, -1)
        n, lq, _ = q.shape
        q = q.reshape(n, lq, nh, c // nh).transpose(1, 2)
        k = k.reshape(n, 2 * lq, nh, c // nh).transpose(1, 2)
        v = v.reshape(n, 2 * lq, nh, c // nh).transpose(1, 2)
        att = torch.softmax(q @ k.transpose(-1, -2) * (c // nh) ** -0.5, dim=-1)
        out = (att @ v).transpose(1, 2).reshape(n, lq, c)
        t = tq + self.proj(out)
        t = t + self.mlp(self.norm_mlp(t))
        t = t.reshape(b, h // ws, w // ws, ws, ws, c).permute(0, 5, 1, 3, 2, 4)
        return t.reshape(b, c, h, w)


class LocalAlignFuse(nn.Module):
    """Flow correction (eq. 3), flow-guided deformable alignment (eq. 5), filter mask and fusion (eq. 6)."""

    def __init__(self, cfg: ICAMConfig):
        super().__init__()
        c, k, a = cfg.c1, cfg.offsets, cfg.align
        self.cfg = cfg
        self.correct = nn.Sequential(conv(3 * c, a), act(), conv(a, a), act(), conv(a, 2))
        self.offset = nn.Sequential(conv(2 * c + 2, a), act(), conv(a, a), act(), conv(a, 3 * k))
        self.dcn_out = conv(k * c, c, 1)
        self.mask = nn.Sequential(conv(2 * c, 32), act(), conv(32, c))
        self.fuse = DenseBlock(2 * c, c, growth=16, layers=3)

    # The parts of forward(), each between two warps of the reference features rl: the CPU graphs
    # (ICAM.ref_a..ref_d) run them one by one with the warps done by OpenCV in between.
    def corrected(self, fl: torch.Tensor, rl: torch.Tensor, rl_warped: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        """Flow correction (eq. 3); rl_warped = warp(rl, flow)."""
        return flow + self.correct(torch.cat([fl, rl, rl_warped], 1))

    def sample_flows(self, fl: torch.Tensor, rl_warped: torch.Tensor, flow: torch.Tensor):
        """The deformable sampling positions (K flows, 2K channels) and modulation (K) of eq. 5;
        rl_warped = warp(rl, flow) with the corrected flow."""
        k = self.cfg.offsets
        o = self.offset(torch.cat([fl, rl_warped, flow], 1))
        offs = 3.0 * torch.tanh(o[:, : 2 * k])          # up to 3 px (at 1/2 res) around the flow
        return torch.cat([flow + offs[:, 2 * i: 2 * i + 2] for i in range(k)], 1), torch.sigmoid(o[:, 2 * k:])

    def aligned_from(self, samples: torch.Tensor, mod: torch.Tensor) -> torch.Tensor:
        """eq. 5's output from the K samples warp(rl, flow_i) (K*C channels) and their modulation."""
        b, k, h, w = mod.shape
        # each sample times its modulation, as one broadcast product instead of K slices and a concat
        # of them (copies on ONNX Runtime's CPU provider); the same products in the same order
        return self.dcn_out((samples.reshape(b, k, -1, h, w) * mod[:, :, None]).reshape(b, -1, h, w))

    def fused(self, fl: torch.Tensor, aligned: torch.Tensor) -> torch.Tensor:
        """Filter mask and dense-block fusion (eq. 6)."""
        m = torch.sigmoid(self.mask(torch.cat([fl, aligned], 1)))
        return fl + self.fuse(torch.cat([fl, aligned * m], 1))

    def forward(self, fl: torch.Tensor, rl: torch.Tensor, flow: torch.Tensor):
        if self.cfg.flow_correction:
            flow = self.corrected(fl, rl, warp(rl, flow), flow)
        if self.cfg.deformable:
            flows, mod = self.sample_flows(fl, warp(rl, flow), flow)
            samples = torch.cat([warp(rl, flows[:, 2 * i: 2 * i + 2]) for i in range(mod.shape[1])], 1)
            aligned = self.aligned_from(samples, mod)
        else:
            aligned = warp(rl, flow)
        return self.fused(fl, aligned), flow, aligned


class ICAM(nn.Module):
    def __init__(self, cfg: ICAMConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or ICAMConfig()
        self.enc = Encoder(cfg)
        self.local = LocalAlignFuse(cfg)
        self.attn = WindowCrossAttention(cfg.c4, cfg.window, cfg.heads) if cfg.global_attention else None
        self.bottom = nn.Sequential(conv(2 * cfg.c4, cfg.c4), act())
        self.d3 = nn.Sequential(conv(cfg.c4 + cfg.c3, cfg.c3), act(), conv(cfg.c3, cfg.c3), act())
        self.d2 = nn.Sequential(conv(cfg.c3 + cfg.c2, cfg.c2), act(), conv(cfg.c2, cfg.c2), act())
        self.d1 = nn.Sequential(conv(cfg.c2 + cfg.c1, cfg.c1), act(), conv(cfg.c1, cfg.c1), act())
        self.d0 = nn.Sequential(conv(cfg.c1 + 4 + (CLUE_IN if cfg.clue else 0), 16), act(), conv(16, 3))
        if cfg.clue:  # how far to trust a reference's aligned pixels, from key and aligned features
            self.clue_w = nn.Sequential(conv(2 * cfg.c1, 16), act(), conv(16, 1))

    # The local state `fl` (1/2 res) carries the key's fused features (c1 channels) and, with
    # cfg.clue, CLUE_STATE more: a full-resolution running sum of weighted reference evidence
    # (sum w*log radiance, 3 ch, and sum w, 1 ch), folded into 1/2 res by pixel_unshuffle. The plugin
    # treats the state as opaque, so this changes no graph interface.

    # --- the three exported graphs ---
    def init(self, key: torch.Tensor):
        fl = self.enc.e1(key)
        g = self.enc.deep(fl)[2]
        if self.cfg.clue:
            fl = torch.cat([fl, torch.zeros_like(fl[:, :1]).repeat(1, self.clue_state, 1, 1)], 1)
        return fl, g

    @property
    def spread(self) -> bool:
        """Whether the clue accumulator also carries the references' spread (for the clue transfer)."""
        return self.cfg.clue and self.cfg.clue_transfer > 0 and self.cfg.clue_transfer_spread > 0

    @property
    def clue_state(self) -> int:
        return CLUE_STATE + (CLUE_SPREAD_STATE if self.spread else 0)

    def ref_step(self, fl: torch.Tensor, g: torch.Tensor, ref: torch.Tensor, preflow: torch.Tensor):
        feat = fl[:, :self.cfg.c1]
        rl = self.enc.e1(ref)
        new, flow, aligned = self.local(feat, rl, downflow(preflow, 2))
        g = self._attend(g, rl, flow)
        if not self.cfg.clue:
            return new, g, flow
        fup = 2 * up2(flow)
        return self._with_clue(fl, new, aligned, warp(ref, fup), fup), g, flow

    def _attend(self, g: torch.Tensor, rl: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        if self.attn is None:
            return g
        return self.attn(g, warp(self.enc.deep(rl)[2], downflow(flow, 8)))

    def _with_clue(self, fl: torch.Tensor, new: torch.Tensor, aligned: torch.Tensor, wr: torch.Tensor,
                   fup: torch.Tensor) -> torch.Tensor:
        """Image-level clue (ours): the paper fuses references only in feature space, where a short
        CPU training learns to copy radiance slowly (and at 1/2 res). Here the reference's own
        pixels, warped to the key at full res with the corrected flow (wr), are accumulated with a
        learned trust weight, zero where the reference itself is clipped."""
        c1 = self.cfg.c1
        w = torch.sigmoid(self.clue_w(torch.cat([fl[:, :c1], aligned], 1)))
        lv = torch.log(torch.pow(wr[:, :3].clamp_min(0), 2.2) + EPS)
        wf = up2(w) * (1 - wr[:, 3:4].clamp(0, 1))
        acc = F.pixel_shuffle(fl[:, c1:], 2)
        add = torch.cat([wf * lv, wf], 1)
        if self.spread:
            # the transfer's own sums: the same samples, except those the warp took from beyond the
            # reference's border (replicated edge pixels, not measurements); weighted M2 of log v updated
            # as Welford's, from deviations (sum(w v^2) - W mean^2 cancels catastrophically in fp16)
            wt = wf * inside(fup)
            s1, ws = acc[:, 4:7], acc[:, 7:8]
            mean_old = s1 / ws.clamp_min(1e-4)
            mean_new = (s1 + wt * lv) / (ws + wt).clamp_min(1e-4)
            m2 = acc[:, 8:11] + wt * (lv - mean_old) * (lv - mean_new)
            return torch.cat([new, F.pixel_unshuffle(torch.cat([acc[:, :4] + add, s1 + wt * lv, ws + wt, m2,
                                                                acc[:, 11:12]], 1), 2)], 1)
        return torch.cat([new, F.pixel_unshuffle(acc + add, 2)], 1)

    # --- ref_step in four graphs for the CPU (engine.SPLIT_REF): every warp of the reference's
    # features happens between them, done by OpenCV (flow.warp_planes). In one graph those warps
    # were gathers of 24-channel maps at 1/2 res plus a full-res GridSample, about a quarter of the
    # step's time on ONNX Runtime's CPU provider. Same result as ref_step (tests/test_export.py).
    @property
    def splittable(self) -> bool:
        return self.cfg.flow_correction and self.cfg.deformable and self.cfg.clue

    def ref_a(self, ref: torch.Tensor, preflow: torch.Tensor):
        """-> rl (reference features, 1/2 res), pf (the pre-flow at 1/2 res). Then w0 = warp(rl, pf)."""
        return self.enc.e1(ref), downflow(preflow, 2)

    def ref_b(self, fl: torch.Tensor, rl: torch.Tensor, w0: torch.Tensor, pf: torch.Tensor):
        """-> the corrected flow. Then w1 = warp(rl, flow)."""
        return self.local.corrected(fl[:, :self.cfg.c1], rl, w0, pf)

    def ref_c(self, fl: torch.Tensor, w1: torch.Tensor, flow: torch.Tensor):
        """-> K sampling flows, their modulation, the flow at full res. Then the K samples
        warp(rl, flow_i) and wr = warp(ref, full-res flow)."""
        flows, mod = self.local.sample_flows(fl[:, :self.cfg.c1], w1, flow)
        return flows, mod, 2 * up2(flow)

    def ref_d(self, fl: torch.Tensor, g: torch.Tensor, rl: torch.Tensor, samples: torch.Tensor, mod: torch.Tensor,
              flow: torch.Tensor, wr: torch.Tensor):
        """-> state' (fl', g') from the warped samples."""
        aligned = self.local.aligned_from(samples, mod)
        new = self.local.fused(fl[:, :self.cfg.c1], aligned)
        return self._with_clue(fl, new, aligned, wr, 2 * up2(flow)), self._attend(g, rl, flow)

    def evidence(self, fl: torch.Tensor) -> torch.Tensor:
        """How much reference evidence the clue path gathered per pixel (full res, in [0, 1)): the
        confidence the decoder sees, wsum / (wsum + 0.5); 0 without references or without the clue."""
        if not self.cfg.clue:
            return torch.zeros_like(fl[:, :1]).repeat_interleave(2, 2).repeat_interleave(2, 3)
        wsum = F.pixel_shuffle(fl[:, self.cfg.c1:], 2)[:, 3:4]
        return wsum / (wsum + 0.5)

    def decode_log(self, key: torch.Tensor, fl: torch.Tensor, g: torch.Tensor,
                   lin: torch.Tensor | None = None) -> torch.Tensor:
        """log(Y + EPS), predicted as a residual over log(f^-1(L) + EPS) (lin: f^-1(L), if at hand).

        Why this form: the first parameterisation, Y = f^-1(L) + exp(r), has d log Y / d r =
        sigmoid(r - log f^-1(L)); once r drifted low the gradient vanished and training collapsed to
        Y = f^-1(L). A residual in the log domain keeps a constant gradient everywhere."""
        loglin = torch.log((input_linear(key) if lin is None else lin) + EPS)
        extra = []
        if self.cfg.clue:
            acc = F.pixel_shuffle(fl[:, self.cfg.c1:], 2)
            wsum = acc[:, 3:4]
            # weighted mean of (reference log radiance - key log radiance), and how much evidence
            extra = [(acc[:, :3] - wsum * loglin) / (wsum + 1e-3), wsum / (wsum + 0.5)]
            fl = fl[:, : self.cfg.c1]
        s2, s3, s4 = self.enc.deep(fl)
        x = self.bottom(torch.cat([s4, g], 1))
        x = self.d3(torch.cat([up2(x), s3], 1))
        x = self.d2(torch.cat([up2(x), s2], 1))
        x = self.d1(torch.cat([up2(x), fl], 1))
        r = self.d0(torch.cat([up2(x), key, *extra], 1))
        return loglin + r

    def decode(self, key: torch.Tensor, fl: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Y (linear, 1.0 = the key's clip level), never below f^-1(L) and at most 2^12."""
        lin = input_linear(key)
        logy = self.decode_log(key, fl, g, lin)
        if self.cfg.clue and self.cfg.clue_transfer > 0:
            logy = self.transfer(logy, key, fl)
        return from_log(logy, lin)

    def transfer(self, logy: torch.Tensor, key: torch.Tensor, fl: torch.Tensor) -> torch.Tensor:
        """Clue transfer (ours): in the key's clipped channels, raise log(Y + EPS) towards
        the clue path's weighted mean log radiance of the aligned references, where enough weight
        backs it and it lies above the key's clip level. Why: the decoder, trained briefly on
        128 px crops, leaves much of that measured radiance unused (on the development set's
        panning still seine the mean alone beat Y by 4.6 dB where references saw the highlight,
        BENCHMARKS.md). Only upwards: a mean that includes nearly clipped references is
        a lower bound, not an estimate (ultraHDR). With clue_transfer_spread, only where the
        references agree: on the validation video hdr10-av1 misaligned references with wrong
        exposure ratios made the mean overshoot; then the mean, weight and spread are the transfer's
        own, from samples that land inside the references (the warp replicates a reference's border
        elsewhere: streaks). Inference only; training fits decode_log."""
        c1, w0, e0 = self.cfg.c1, self.cfg.clue_transfer, self.cfg.clue_transfer_level
        acc = F.pixel_shuffle(fl[:, c1:], 2)
        # with a spread gate, the transfer's own sums (samples inside the references only); else the clue path's
        k = 4 if self.spread else 0
        wsum = acc[:, k + 3:k + 4]
        loge = acc[:, k:k + 3] / wsum.clamp_min(1e-3)
        b = (((key[:, :3] - 0.97) / 0.02).clamp(0, 1) * ((wsum - w0) / w0).clamp(0, 1)
             * ((torch.exp(loge) - EPS - e0) / 0.05).clamp(0, 1))
        if self.spread:  # references that disagree (misaligned, wrong exposure ratio): no transfer
            s0 = self.cfg.clue_transfer_spread
            std = torch.sqrt((acc[:, 8:11] / wsum.clamp_min(1e-3)).clamp_min(0))
            b = b * (1 - ((std - s0) / s0).clamp(0, 1))
        return logy + b * (loge - logy).clamp_min(0)

    def decode_evidence(self, key: torch.Tensor, fl: torch.Tensor, g: torch.Tensor):
        """The exported decode graph: Y and the reference evidence behind it (FCPM's merge reads it)."""
        return self.decode(key, fl, g), self.evidence(fl)

    def encode(self, key: torch.Tensor, refs: list[torch.Tensor], flows: list[torch.Tensor]):
        """The state (fl, g) after adding the references one by one, and their corrected flows."""
        fl, g = self.init(key)
        corrected = []
        for ref, pf in zip(refs, flows):
            fl, g, flow = self.ref_step(fl, g, ref, pf)
            corrected.append(flow)
        return fl, g, corrected

    def forward(self, key: torch.Tensor, refs: list[torch.Tensor], flows: list[torch.Tensor], log: bool = False):
        """Y (or log(Y + EPS) when log=True, what training uses) and the corrected flows."""
        fl, g, corrected = self.encode(key, refs, flows)
        return (self.decode_log if log else self.decode)(key, fl, g), corrected


def load_compatible(model: ICAM, state: dict) -> list[str]:
    """Load weights from a checkpoint of another configuration: tensors of a different shape are
    copied into their leading slice, the rest zero (a layer that gained inputs starts out ignoring
    them), so a trained model keeps its function when a component is added. Returns what was new."""
    own = model.state_dict()
    fresh = []
    for k, v in own.items():
        src = state.get(k)
        if src is None:
            fresh.append(k)
            continue
        if src.shape == v.shape:
            own[k] = src
        elif src.dim() == v.dim():
            common = tuple(slice(0, min(a, b)) for a, b in zip(src.shape, v.shape))
            t = torch.zeros_like(v)
            t[common] = src[common]
            own[k] = t
            fresh.append(k + " (reshaped)")
    model.load_state_dict(own)
    return fresh
