"""Camera pans over lat-long HDR panoramas: LDR/HDR video with exact geometry, exposure and clue masks.

A pinhole camera turns about its centre (yaw sweep, slow pitch drift, a little hand-held jitter)
inside an equirectangular panorama, so every frame's geometry is a rotation R_t and the flow between
any two frames follows exactly from R_a, R_b and the intrinsics (no parallax, no estimate). A
centre-weighted auto-exposure meters each frame's radiance and follows its target with a lag (a
first-order filter in stops), as camcorders and phones do; the camera is gamma 2.2 with shot + read
noise and 8-bit quantisation. From that:

* ``flow(a, b)``: the true flow a -> b and where it lands inside frame b;
* ``exposure``: the true exposure per frame (ratio b -> a = exposure[a] / exposure[b]);
* ``clue_mask(t)``: frame t's clipped pixels whose scene point another frame within ``reach`` frames
  sees unclipped: the pixels temporal clues can recover, and the ones a temporal method is scored on.

Panoramas are any [H, 2H, 3] linear RGB array (``vsvitm.training.exr.read_exr``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from ..flow import luma

CLIPPED_CODE = 242      # max channel >= this (0.95 of 255, vsvitm-evaluate's over-exposed mask) is clipped
UNCLIPPED_CODE = 240    # max channel <= this in another frame: that frame measures the scene point
SUPERSAMPLE = 4         # points per pixel side that a frame's pixel averages


def rotation(yaw: float, pitch: float, roll: float = 0.0) -> np.ndarray:
    """Camera -> world rotation (radians): roll about the view axis, then pitch up, then yaw right.
    World axes: x right, y up, z forward at yaw 0."""
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    r_yaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    r_pitch = np.array([[1, 0, 0], [0, cp, sp], [0, -sp, cp]])
    r_roll = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return r_yaw @ r_pitch @ r_roll


def camera_rays(size: tuple[int, int], focal: float, sub: int = 1) -> np.ndarray:
    """Camera rays [H*sub, W*sub, 3] (x right, y up, z forward) of the pixel grid of a pinhole camera, or
    of a sub x sub grid of points inside each pixel.

    size: (H, W); focal: focal length in pixels; sub: points per pixel side."""
    h, w = size
    v, u = np.mgrid[0:h * sub, 0:w * sub].astype(np.float64)
    u, v = (u + 0.5) / sub - 0.5, (v + 0.5) / sub - 0.5
    return np.stack([(u - (w - 1) / 2) / focal, -(v - (h - 1) / 2) / focal, np.ones_like(u)], -1)


def rotation_flow(rot_a: np.ndarray, rot_b: np.ndarray, size: tuple[int, int], focal: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The exact flow between two views of a camera turning about its centre: (flow a -> b [H, W, 2] in
    pixels (x, y), bool [H, W]: the point lands in front of camera b and inside its frame).

    rot_a, rot_b: camera -> world rotations (3x3); size: (H, W); focal: focal length in pixels."""
    h, w = size
    c = camera_rays(size, focal) @ (rot_b.T @ rot_a).T
    front = c[..., 2] > 1e-6
    z = np.where(front, c[..., 2], 1.0)
    u = focal * c[..., 0] / z + (w - 1) / 2
    v = -focal * c[..., 1] / z + (h - 1) / 2
    v0, u0 = np.mgrid[0:h, 0:w]
    flow = np.stack([u - u0, v - v0], -1).astype(np.float32)
    valid = front & (u >= 0) & (u <= w - 1) & (v >= 0) & (v <= h - 1)
    return flow, valid


@dataclass
class PanSequence:
    """A pan over one panorama; every array it returns is deterministic for (panorama, seed, size).

    panorama: [Hp, Wp, 3] linear RGB, lat-long (Wp = 2 Hp), longitude -pi..pi left to right.
    n_frames: frames in the pan.
    size: (H, W) of the camera frames.
    seed: draws the path, exposure bias, lag and noise.
    fov: horizontal field of view in degrees.
    sweep: (lo, hi) total yaw turn in degrees, drawn uniformly (sign drawn too).
    lag: (lo, hi) of the auto-exposure's per-frame step towards its target (fraction of the gap in stops).
    bias: (lo, hi) stops of over-exposure against a centre-weighted mid-grey (more: more clipping).
    follow: how much of the metered change the exposure target follows (a slow auto-exposure: 0.5).
    swing: the target stays within +-swing stops of its mean over the pan.
    name: the sequence's name in files and tables.
    """
    panorama: np.ndarray
    n_frames: int
    size: tuple[int, int]
    seed: int
    fov: float = 70.0
    sweep: tuple[float, float] = (90.0, 150.0)
    lag: tuple[float, float] = (0.08, 0.2)
    bias: tuple[float, float] = (0.5, 1.5)
    follow: float = 0.5
    swing: float = 0.75
    name: str = "pan"
    rotations: np.ndarray = field(init=False, repr=False)
    exposure: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        if self.n_frames < 2:
            raise ValueError(f"PanSequence: n_frames must be at least 2, got {self.n_frames}")
        ph, pw = self.panorama.shape[:2]
        if pw != 2 * ph or self.panorama.ndim != 3 or self.panorama.shape[2] != 3:
            raise ValueError(f"PanSequence: the panorama must be lat-long [H, 2H, 3], got {self.panorama.shape}")
        self.panorama = np.ascontiguousarray(np.nan_to_num(self.panorama, posinf=0.0).clip(0, None), np.float32)
        rng = np.random.default_rng(self.seed)
        h, w = self.size
        self.focal = 0.5 * w / np.tan(np.radians(self.fov) / 2)
        n = self.n_frames
        # yaw: a sweep with an eased speed profile, pitch: a slow drift, both with hand-held jitter
        turn = np.radians(rng.uniform(*self.sweep)) * rng.choice([-1.0, 1.0])
        s = np.linspace(0.0, 1.0, n)
        ease = s + rng.uniform(-0.12, 0.12) * np.sin(np.pi * s) * np.sin(2 * np.pi * s + rng.uniform(0, np.pi))
        yaw0 = rng.uniform(-np.pi, np.pi)
        pitch = np.radians(rng.uniform(0.0, 15.0) + rng.uniform(-6.0, 6.0) * np.sin(np.pi * s + rng.uniform(0, 1)))
        jit = np.radians(0.15) * np.cumsum(rng.standard_normal((n, 2)), axis=0) / np.sqrt(np.arange(1, n + 1))[:, None]
        self.rotations = np.stack([rotation(yaw0 + turn * ease[t] + jit[t, 0], pitch[t] + jit[t, 1]) for t in range(n)])
        # centre-weighted metering of the radiance, then a lagging controller in stops
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        wgt = np.exp(-(((xx - w / 2) / (0.3 * w)) ** 2 + ((yy - h / 2) / (0.3 * h)) ** 2))
        meter = np.array([float((luma(self._radiance(t)) * wgt).sum() / wgt.sum()) for t in range(n)])
        goal = np.log2(0.18 / np.maximum(meter, 1e-6))
        goal = goal.mean() + np.clip(self.follow * (goal - goal.mean()), -self.swing, self.swing) + rng.uniform(*self.bias)
        a = rng.uniform(*self.lag)
        ev = np.empty(n)
        ev[0] = goal[0]
        for t in range(1, n):
            ev[t] = ev[t - 1] + a * (goal[t] - ev[t - 1])
        self.exposure = np.exp2(ev).astype(np.float32)
        self.noise = (10 ** rng.uniform(-4.0, -3.0), 10 ** rng.uniform(-3.5, -2.8))

    # --- geometry ---
    def _radiance(self, t: int) -> np.ndarray:
        """Frame t's radiance, each pixel the mean of SUPERSAMPLE^2 points inside it (a sensor integrates
        over its pixels: a lamp smaller than a pixel does not flicker with its sub-pixel position)."""
        d = camera_rays(self.size, self.focal, SUPERSAMPLE) @ self.rotations[t].T
        lon = np.arctan2(d[..., 0], d[..., 2])
        lat = np.arctan2(d[..., 1], np.hypot(d[..., 0], d[..., 2]))
        ph, pw = self.panorama.shape[:2]
        mx = ((lon / (2 * np.pi) + 0.5) * pw - 0.5).astype(np.float32)
        my = np.clip((0.5 - lat / np.pi) * ph - 0.5, 0, ph - 1).astype(np.float32)
        fine = cv2.remap(self.panorama, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
        h, w = self.size
        return fine.reshape(h, SUPERSAMPLE, w, SUPERSAMPLE, 3).mean(axis=(1, 3))

    def flow(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        """(true flow a -> b [H, W, 2] in pixels (x, y), bool [H, W]: the point lands inside frame b)."""
        return rotation_flow(self.rotations[a], self.rotations[b], self.size, self.focal)

    # --- camera ---
    def hdr(self, t: int) -> np.ndarray:
        """Frame t's truth: radiance x exposure (linear, 1.0 = the camera's clip level), float32 [H, W, 3]."""
        return self._radiance(t) * self.exposure[t]

    def ldr(self, t: int, hdr: np.ndarray | None = None) -> np.ndarray:
        """Frame t as the camera records it: noise, clip, gamma 2.2, 8 bits (uint8 [H, W, 3])."""
        e = self.hdr(t) if hdr is None else hdr
        shot, read = self.noise
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, t, 11])
        ec = np.minimum(e, 1.5)
        ec = ec + np.sqrt(shot * ec + read * read) * rng.standard_normal(ec.shape).astype(np.float32)
        return np.rint(np.clip(ec, 0.0, 1.0) ** (1 / 2.2) * 255.0).astype(np.uint8)

    def clue_mask(self, t: int, ldr: np.ndarray, reach: int = 90) -> np.ndarray:
        """Bool [H, W]: clipped in frame t (max channel >= CLIPPED_CODE) and seen unclipped (max channel
        <= UNCLIPPED_CODE, at the true flow, inside the frame) by some frame within +-reach.
        ldr: the whole sequence's LDR frames [T, H, W, 3]."""
        mx = ldr.max(axis=-1)
        clipped = mx[t] >= CLIPPED_CODE
        seen = np.zeros_like(clipped)
        if not clipped.any():
            return seen
        for r in range(max(0, t - reach), min(self.n_frames, t + reach + 1)):
            if r == t:
                continue
            f, valid = self.flow(t, r)
            seen |= valid & (nearest_at(mx[r], f) <= UNCLIPPED_CODE)
        return seen & clipped

    def to_npz_dict(self, reach: int = 90) -> dict:
        """Everything vsvitm-evaluate and vsvitm-temporal-ablation read: ldr uint8 [T,H,W,3], hdr float16 [T,H,W,3]
        (exposure-relative, 1.0 = clip level), exposure [T], rotations [T,3,3], focal, clue bool [T,H,W]."""
        n = self.n_frames
        hdr = np.stack([self.hdr(t) for t in range(n)])
        ldr = np.stack([self.ldr(t, hdr[t]) for t in range(n)])
        clue = np.stack([self.clue_mask(t, ldr, reach) for t in range(n)])
        return {"ldr": ldr, "hdr": np.minimum(hdr, 65000.0).astype(np.float16), "exposure": self.exposure,
                "rotations": self.rotations, "focal": np.float64(self.focal), "clue": clue,
                "fps": np.float64(24.0), "source": np.str_(self.name), "seed": np.int64(self.seed),
                "reach": np.int64(reach)}


def nearest_at(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """img's pixel nearest to where the flow sends each pixel (255, clipped, outside the frame): what the
    clue mask reads of another frame.

    img: HxW or HxWxC uint8; flow: HxWx2 (pixels) from the frame the result is aligned to."""
    h, w = flow.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return cv2.remap(img, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_NEAREST,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=(255,) * 4)


def flow_from_npz(d: dict, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
    """The true flow a -> b of a saved pan (to_npz_dict's rotations and focal): (flow [H, W, 2], valid [H, W])."""
    rot = np.asarray(d["rotations"])
    return rotation_flow(rot[a], rot[b], tuple(d["ldr"].shape[1:3]), float(d["focal"]))
