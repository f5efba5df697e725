"""Training-data synthesis: LDR/HDR video pairs from real HDR stills and HDR video.

A :class:`CameraSequence` simulates a camera filming a linear HDR :class:`Source`:

* a smooth random camera path, one homography per frame (pan, zoom, small rotation and perspective)
  that always keeps the view inside the source; video sources also advance through their frames
  (ping-pong looping); optionally (``parallax=True``, stills) a foreground layer moving against the
  background, so that no single homography aligns a reference;
* auto-exposure: every view is metered on a 32x32 render and followed with a first-order lag
  (time constant 5..40 frames), plus occasional exposure ramps and steps -- regions clipped in one
  frame are well exposed some frames away ("temporal clues");
* a camera curve (gamma 2.2 most of the time, else sRGB, gamma 1.8..2.6 or a filmic S-curve),
  clipping at 1.0, shot + read noise in linear light, 8-bit quantisation, optional JPEG.

Ground truth ``hdr`` is exposure-relative linear radiance ``radiance * T_t`` (1.0 = that frame's clip
level, unclipped, noise-free). ``flow(t, r)`` is exact from the homographies for still sources; for
video sources the camera flow initialises DIS optical flow on the noise-free HDR renders (log
luminance), with a forward-backward consistency check in the mask.

Everything is deterministic for a seed (``np.random.default_rng``; per-frame noise is seeded by
``(seed, t)``, so a frame does not depend on which other frames are rendered with it).
"""
from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np

from ..curves import max_channel
from .camera import (camera_flow, crf, crf_inverse, local_scale, random_transfer, refined_flow, smooth_path,
                     translation, warp)
from .sources import Source, luminance

METER = 32  # metering render size

# --------------------------------------------------------------------------------------------
# Sequences


class SequenceBase:
    """What a live (CameraSequence) and a saved (saved.NpzSequence) sequence share: sizes, exposures,
    homographies, and the ground-truth flow between two frames."""

    n_frames: int
    size: tuple[int, int]
    exposure: np.ndarray
    transfer: str
    homographies: np.ndarray  # [n, 3, 3] output pixel -> source pixel
    src_index: np.ndarray  # [n] source frame per output frame
    is_video: bool

    def _radiance(self, t: int) -> np.ndarray:
        raise NotImplementedError

    def flow(self, t: int, r: int) -> tuple[np.ndarray, np.ndarray]:
        """GT flow float32 [H, W, 2] (dx, dy): pixel p of frame t is seen at p + flow in frame r;
        bool [H, W] mask "lands inside frame r" (and, for video sources, flow is consistent).

        t: the frame the flow starts from.
        r: the frame it points into.
        """
        Ht, Hr = self.homographies[t], self.homographies[r]
        f_tr, valid = camera_flow(Ht, Hr, self.size)
        if not self.is_video or self.src_index[t] == self.src_index[r] or t == r:
            return f_tr, valid
        f_rt, _ = camera_flow(Hr, Ht, self.size)
        return refined_flow(self._radiance(t), self._radiance(r), f_tr, f_rt)


class CameraSequence(SequenceBase):
    """A synthetic LDR/HDR video made from one Source; deterministic for its seed."""

    def __init__(self, source: Source, n_frames: int, size: tuple[int, int], seed: int, *,
                 transfer: str | None = None, jpeg: bool | int | None = None, noise: bool | tuple = True,
                 zoom: tuple[float, float] = (0.35, 0.9), motion: float | None = None,
                 max_rotation: float = 5.0, max_perspective: float = 0.08, static_prob: float = 0.1,
                 clip_percentile: tuple[float, float] = (88.0, 99.0), mean_weight: tuple[float, float] = (0.0, 0.5),
                 tau: tuple[float, float] = (5.0, 40.0), events_per_100: float = 1.5,
                 event_stops: tuple[float, float] = (0.5, 1.5), max_bias_stops: float = 1.5,
                 start_frame: int | None = None, exposure_scale: float = 1.0,
                 min_exposure: float | None = None, parallax: bool = False):
        """source: the HDR material filmed.
        n_frames: frames.
        size: output (height, width).
        seed: the seed of every random choice.
        transfer: the camera curve (camera.crf; None: random_transfer).
        jpeg: JPEG quality, True for a random one, False for none (None: random, 30 % of sequences).
        noise: (shot, read) noise, True for random amounts, False for none.
        zoom: range of the view's size relative to the largest view that fits the source.
        motion: camera motion 0..1 (None: random; static with probability static_prob).
        max_rotation: largest rotation, degrees.
        max_perspective: largest perspective tilt.
        static_prob: probability of a static camera when motion is None.
        clip_percentile: range of the percentile of the max channel the auto-exposure puts at the clip level.
        mean_weight: range of the weight of mean-luminance metering against the percentile's.
        tau: range of the auto-exposure's time constant, frames.
        events_per_100: exposure ramps and steps per 100 frames.
        event_stops: range of an event's size, stops.
        max_bias_stops: largest bias the events build up, stops.
        start_frame: a video source's first frame (None: random).
        exposure_scale: factor on every exposure.
        min_exposure: lower bound of the exposures (None: none).
        parallax: a foreground layer moving against the background (stills).
        """
        self.source, self.n_frames, self.size, self.seed = source, int(n_frames), (int(size[0]), int(size[1])), seed
        self.name = source.name
        self.is_video = source.is_video
        rng = np.random.default_rng(seed)
        n, (h, w) = self.n_frames, self.size
        # --- degradations
        self.transfer = transfer if transfer is not None else random_transfer(rng)
        crf(self.transfer, np.zeros(1, np.float32))  # validate
        jq = rng.integers(60, 96)
        use_jpeg = rng.random() < 0.3
        self.jpeg_quality = 0 if jpeg is False or (jpeg is None and not use_jpeg) else (
            int(jq) if jpeg is None or jpeg is True else int(jpeg))
        shot, read = 10 ** rng.uniform(-4.0, -2.5), 10 ** rng.uniform(-3.7, -2.5)
        if noise is False:
            shot = read = 0.0
        elif isinstance(noise, tuple):
            shot, read = noise
        self.noise = (float(shot), float(read))
        # --- source frame per output frame (ping-pong)
        N = len(source.frames)
        if N > 1:
            per = 2 * N - 2
            t0 = int(rng.integers(0, per)) if start_frame is None else int(start_frame)
            k = (t0 + np.arange(n)) % per
            self.src_index = np.where(k < N, k, per - k).astype(np.int64)
        else:
            self.src_index = np.zeros(n, np.int64)
        # --- camera path
        self.homographies = self._camera_path(rng, zoom, motion, max_rotation, max_perspective, static_prob)
        # --- auto-exposure
        self.exposure = self._auto_exposure(rng, clip_percentile, mean_weight, tau, events_per_100,
                                            event_stops, max_bias_stops) * np.float32(exposure_scale)
        if min_exposure is not None:
            self.exposure = np.maximum(self.exposure, np.float32(min_exposure))
        # --- a foreground layer moving against the background (stills only; its own rng, so
        # sequences without it are unchanged)
        self.layer = None
        if parallax and not self.is_video:
            self._make_layer(np.random.default_rng([int(seed) & 0xFFFFFFFFFFFF, 11]))

    # -- parallax layer
    def _make_layer(self, rng) -> None:
        """A foreground object in front of the scene, moving relative to it: the homographies alone
        make every reference exactly alignable, which real footage is not (parallax, occlusion).

        The layer is the source itself, shifted (other content) and scaled by 0.25..1.2 (mostly darker:
        a tree, a car or a window frame in front of a bright sky), cut out by 1-3 soft ellipses, and
        drifting 0.1..1.2 output pixels per frame against the background plus a smooth wobble. Its image
        is premultiplied RGBA in source coordinates; frame t samples it at translate(-d_t) @ H_t. The
        auto-exposure meters the background only, and to_npz_dict does not record the layer."""
        n, (h, w) = self.n_frames, self.size
        sh, sw = self.source.shape
        img = self.source.frames[0]
        fg = np.roll(img, (int(rng.integers(sh // 4, 3 * sh // 4 + 1)), int(rng.integers(sw // 4, 3 * sw // 4 + 1))),
                     axis=(0, 1)) * np.float32(2.0 ** rng.uniform(-2.0, 0.3))
        mid = self.homographies[n // 2]
        scale = local_scale(mid, h, w)  # source px per output px
        c = mid @ np.array([(w - 1) / 2, (h - 1) / 2, 1.0])
        c = c[:2] / c[2]
        alpha = np.zeros((sh, sw), np.float32)
        for _ in range(int(rng.integers(1, 4))):
            cx, cy = c + rng.uniform(-0.3, 0.3, 2) * scale * np.array([w, h])
            rx, ry = rng.uniform(0.05, 0.3, 2) * scale * np.array([w, h])
            th = rng.uniform(0, math.pi)
            # on the ellipse's bounding square only (it lies inside the circle of radius max(rx, ry))
            R = max(rx, ry) + 2
            x0, x1 = max(int(cx - R), 0), min(int(cx + R) + 1, sw)
            y0, y1 = max(int(cy - R), 0), min(int(cy + R) + 1, sh)
            if x0 >= x1 or y0 >= y1:
                continue
            ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
            u = ((xs - cx) * math.cos(th) + (ys - cy) * math.sin(th)) / rx
            v = (-(xs - cx) * math.sin(th) + (ys - cy) * math.cos(th)) / ry
            alpha[y0:y1, x0:x1] = np.maximum(alpha[y0:y1, x0:x1], (u * u + v * v <= 1).astype(np.float32))
        soft = max(float(rng.uniform(0.3, 2.0) * scale), 0.5)
        alpha = cv2.GaussianBlur(alpha, (0, 0), soft)
        self.layer = Source("layer", [np.ascontiguousarray(np.dstack([fg * alpha[..., None], alpha]), np.float32)])
        speed = rng.uniform(0.1, 1.2) * scale
        ang = rng.uniform(0, 2 * math.pi)
        t = np.arange(n, dtype=np.float64) - rng.uniform(0, n)
        wob = rng.uniform(0, 8) * scale
        dx = speed * math.cos(ang) * t + wob * smooth_path(rng, n, (20.0, 120.0))
        dy = speed * math.sin(ang) * t + wob * smooth_path(rng, n, (20.0, 120.0))
        self.layer_homographies = np.stack([translation(-dx[i], -dy[i]) @ self.homographies[i] for i in range(n)])

    def _layer(self, t: int) -> np.ndarray:
        """Premultiplied RGBA of the layer as seen in frame t."""
        return warp(self.layer.pyramid(0), self.layer_homographies[t], self.size)

    def flow(self, t: int, r: int) -> tuple[np.ndarray, np.ndarray]:
        """SequenceBase.flow, with the foreground layer's own motion where it covers frame t and what it
        hides in frame r masked out.

        t: the frame the flow starts from.
        r: the frame it points into.
        """
        if self.layer is None:
            return super().flow(t, r)
        f_bg, v_bg = camera_flow(self.homographies[t], self.homographies[r], self.size)
        f_fg, v_fg = camera_flow(self.layer_homographies[t], self.layer_homographies[r], self.size)
        a_t = self._layer(t)[..., 3]
        h, w = self.size
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        # background pixels of t that the layer covers in r are occluded there
        a_r = cv2.remap(self._layer(r)[..., 3], xs + f_bg[..., 0], ys + f_bg[..., 1], cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE)
        front = a_t > 0.5
        flow = np.where(front[..., None], f_fg, f_bg)
        valid = np.where(front, v_fg & (a_t > 0.95), v_bg & (a_t < 0.05) & (a_r < 0.05))
        return flow.astype(np.float32), valid

    # -- camera path
    def _camera_path(self, rng, zoom, motion, max_rot, max_persp, static_prob) -> np.ndarray:
        n, (h, w) = self.n_frames, self.size
        sh, sw = self.source.shape
        s_full = min((sw - 1) / max(w - 1, 1), (sh - 1) / max(h - 1, 1))
        static = rng.random() < static_prob
        m = (0.0 if static else rng.uniform(0.2, 1.0)) if motion is None else float(motion)
        zlo, zhi = zoom
        z0 = rng.uniform(0, 1)
        zu = np.clip(z0 + m * min(z0, 1 - z0) * smooth_path(rng, n), 0, 1)
        s = s_full * np.exp(math.log(zlo) + (math.log(zhi) - math.log(zlo)) * zu)
        rot = np.deg2rad(rng.uniform(-1, 1) * max_rot * min(m * 2, 1)) * smooth_path(rng, n) + \
            np.deg2rad(rng.uniform(-0.3, 0.3) * max_rot)
        px = rng.uniform(-1, 1) * max_persp * min(m * 2, 1) * smooth_path(rng, n)
        py = rng.uniform(-1, 1) * max_persp * min(m * 2, 1) * smooth_path(rng, n)
        c0x, c0y = rng.uniform(0.15, 0.85, 2)
        ux = np.clip(c0x + m * min(c0x, 1 - c0x) * smooth_path(rng, n), 0, 1)
        uy = np.clip(c0y + m * min(c0y, 1 - c0y) * smooth_path(rng, n), 0, 1)
        corners = np.array([[0, w - 1, 0, w - 1], [0, 0, h - 1, h - 1], [1, 1, 1, 1]], np.float64)
        centre = translation(-(w - 1) / 2, -(h - 1) / 2)
        Hs = np.empty((n, 3, 3), np.float64)
        for t in range(n):
            st = s[t]
            for _ in range(40):
                c, sn = math.cos(rot[t]), math.sin(rot[t])
                P = np.array([[1, 0, 0], [0, 1, 0], [px[t] / max((w - 1) / 2, 1), py[t] / max((h - 1) / 2, 1), 1]])
                M = np.array([[c * st, -sn * st, 0], [sn * st, c * st, 0], [0, 0, 1]]) @ P @ centre
                q = M @ corners
                q = q[:2] / q[2]
                xlo, xhi = -q[0].min(), sw - 1 - q[0].max()
                ylo, yhi = -q[1].min(), sh - 1 - q[1].max()
                if xhi >= xlo - 1e-6 and yhi >= ylo - 1e-6:
                    break
                st *= 0.95
            cx = xlo + ux[t] * max(xhi - xlo, 0.0)
            cy = ylo + uy[t] * max(yhi - ylo, 0.0)
            Hs[t] = translation(cx, cy) @ M
        return Hs

    # -- exposure
    def _meter(self, t: int) -> np.ndarray:
        h, w = self.size
        D = np.array([[w / METER, 0, (w / METER - 1) / 2], [0, h / METER, (h / METER - 1) / 2], [0, 0, 1]])
        return warp(self.source.pyramid(int(self.src_index[t])), self.homographies[t] @ D, (METER, METER))

    def _auto_exposure(self, rng, clip_pct, mean_w, tau, ev_rate, ev_stops, max_bias) -> np.ndarray:
        n = self.n_frames
        p = rng.uniform(*clip_pct)
        wm = rng.uniform(*mean_w)
        key = rng.uniform(0.1, 0.25)
        y = np.stack([self._meter(t).reshape(-1, 3) for t in range(n)])  # [n, M*M, 3]
        ly = luminance(y)  # black borders / deep shadows count as at most ~4 stops under the median
        ly = np.maximum(ly, 0.05 * np.median(ly, axis=1, keepdims=True) + 1e-6)
        geo = np.exp(np.mean(np.log(ly), axis=1))
        pc = np.maximum(np.percentile(max_channel(y), p, axis=1), 1e-6)  # metering on max channel
        target = wm * np.log2(key / np.maximum(geo, 1e-6)) + (1 - wm) * np.log2(1.0 / pc)
        # exposure events: ramps and steps of the bias, in stops
        bias = np.zeros(n)
        n_ev = rng.poisson(ev_rate * n / 100.0)
        cur, last = 0.0, 0
        for t0 in np.sort(rng.integers(0, max(n, 1), n_ev)):
            if cur != 0.0 and rng.random() < 0.5:
                mag = -cur  # back to the metered exposure
            else:
                mag = rng.uniform(*ev_stops) * rng.choice([-1, 1])
                if abs(cur + mag) > max_bias:
                    mag = -mag
            dur = 1 if rng.random() < 0.3 else int(rng.integers(8, 61))
            bias[last:t0] = cur
            seg = np.arange(t0, min(t0 + dur, n))
            bias[seg] = cur + mag * (seg - t0 + 1) / dur
            cur += mag
            last = min(t0 + dur, n)
        bias[last:] = cur
        goal = target + bias
        a = 1.0 - math.exp(-1.0 / rng.uniform(*tau))
        L = np.empty(n)
        L[0] = goal[0] + rng.uniform(-1, 1)
        for t in range(1, n):
            L[t] = L[t - 1] + a * (goal[t] - L[t - 1])
        return np.exp2(L).astype(np.float32)

    # -- rendering
    def _radiance(self, t: int) -> np.ndarray:
        bg = warp(self.source.pyramid(int(self.src_index[t])), self.homographies[t], self.size)
        if self.layer is None:
            return bg
        fg = self._layer(t)
        return bg * (1 - fg[..., 3:]) + fg[..., :3]

    def render(self, indices: Sequence[int]) -> dict:
        """ldr uint8 [n, H, W, 3] camera output; hdr float32 [n, H, W, 3] = radiance * T_t (unclipped).

        indices: the frames.
        """
        idx = [int(i) for i in indices]
        h, w = self.size
        ldr = np.empty((len(idx), h, w, 3), np.uint8)
        hdr = np.empty((len(idx), h, w, 3), np.float32)
        for j, t in enumerate(idx):
            hdr[j] = self._radiance(t) * self.exposure[t]
            ldr[j] = self._camera(hdr[j], t)
        return {"ldr": ldr, "hdr": hdr}

    def _camera(self, e: np.ndarray, t: int) -> np.ndarray:
        shot, read = self.noise
        if shot > 0 or read > 0:
            rng = np.random.default_rng([int(self.seed) & 0xFFFFFFFFFFFF, t, 7])
            ec = np.minimum(e, 1.5)
            ec = ec + np.sqrt(shot * ec + read * read) * rng.standard_normal(ec.shape, np.float32)
        else:
            ec = e
        q = np.rint(crf(self.transfer, ec) * 255.0).astype(np.uint8)
        if self.jpeg_quality:
            ok, buf = cv2.imencode(".jpg", q[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
            q = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
        return q

    def to_npz_dict(self, frames: Sequence[int] | None = None) -> dict:
        """The sequence as saved (.npz): ldr, hdr (float16), exposure, homography, src_index and its settings.

        frames: the frames to render (None: all).
        """
        idx = list(range(self.n_frames)) if frames is None else list(frames)
        fr = self.render(idx)
        return {"ldr": fr["ldr"], "hdr": fr["hdr"].astype(np.float16), "exposure": self.exposure[idx],
                "homography": self.homographies[idx], "src_index": self.src_index[idx],
                "is_video": np.bool_(self.is_video), "transfer": np.str_(self.transfer),
                "source": np.str_(self.name), "seed": np.int64(self.seed), "jpeg_quality": np.int64(self.jpeg_quality),
                "noise": np.array(self.noise, np.float64)}


def synth_sequence(source: Source, n_frames: int, size: tuple[int, int], seed: int, **options) -> CameraSequence:
    """A synthetic camera sequence over ``source``.

    source: the HDR material filmed.
    n_frames: frames.
    size: output (height, width).
    seed: the seed of every random choice.
    options: more CameraSequence keyword arguments.
    """
    return CameraSequence(source, n_frames, size, seed, **options)


def synth_from_ldr_video(frames_uint8: np.ndarray, seed: int, n_frames: int | None = None,
                         size: tuple[int, int] | None = None, transfer: str = "gamma2.2", **options) -> CameraSequence:
    """The paper's LDR-video route (eq. 14): O = f(clip(f^-1(L) * T)); ground truth f^-1(L) * T.

    ``frames_uint8`` [N, H, W, 3]. By default no extra camera motion (the video's own motion), no noise,
    no JPEG; the auto-exposure model picks T_t >= 1 (so that some pixels clip; T = 1 is the input frame).

    frames_uint8: the LDR video.
    seed: the seed of every random choice.
    n_frames: frames (None: the video's).
    size: output (height, width) (None: the video's).
    transfer: the camera curve that made the video (its f^-1 linearises it).
    options: more CameraSequence keyword arguments.
    """
    frames_uint8 = np.asarray(frames_uint8)
    lin = [crf_inverse(transfer, f.astype(np.float32) / 255.0) for f in frames_uint8]
    src = Source("ldr-video", [np.ascontiguousarray(x, dtype=np.float32) for x in lin])
    n = len(lin) if n_frames is None else n_frames
    hw = lin[0].shape[:2] if size is None else size
    opts = dict(transfer=transfer, jpeg=False, noise=False, zoom=(1.0, 1.0), motion=0.0, max_rotation=0.0,
                max_perspective=0.0, start_frame=0, clip_percentile=(80.0, 97.0), mean_weight=(0.0, 0.0),
                min_exposure=1.0)
    opts.update(options)
    return CameraSequence(src, n, hw, seed, **opts)
