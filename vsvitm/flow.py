"""Pre-flow between LDR frames: OpenCV DIS on exposure-normalised luma, and the robust exposure ratio.

Runs on the CPU in numpy/OpenCV, both in the plugin and in training, so the networks see the same
pre-flow at train and run time. Flow convention: key(p) ~ ref(p + flow[p]) (a flow from key to ref).
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import cv2
import numpy as np

_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)

# OpenCV DIS presets by name (ITM(preflow=...)).
PRESETS = {"fast": cv2.DISOPTICAL_FLOW_PRESET_FAST, "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
# The plugin's pre-flow. The shipped networks were trained on FAST pre-flows (DISFlow's default, kept
# for training), and their flow correction refines what they get. MEDIUM (finer last scale, denser
# patches, more iterations) still scored higher on the validation set (+0.09 dB over-exposed, full
# pipeline; BENCHMARKS.md) for ~8 ms more per pair at the working size.
RUNTIME_PRESET = "medium"


def preset_id(name, who: str = "DISFlow") -> int:
    """The OpenCV DIS preset called `name` (PRESETS); a ValueError naming the choices for anything else."""
    if not (isinstance(name, str) and name in PRESETS):
        raise ValueError(f"{who}: preflow must be one of {tuple(PRESETS)} (OpenCV DIS presets), got {name!r}")
    return PRESETS[name]


def luma(lin: np.ndarray) -> np.ndarray:
    return lin @ _LUMA


def exposure_ratio(lin_key: np.ndarray, lin_ref: np.ndarray, lo: float = 0.01, hi: float = 0.75,
                   min_pixels: int = 64, default: float | None = 1.0) -> float | None:
    """Median of linear luma ratios key/ref over pixels well exposed in both (robust to clipping).

    Multiplying the reference by the ratio brings it to the key frame's exposure. Inputs are HxW luma
    (or HxWx3 linear RGB) at corresponding positions; returns `default` when too few pixels qualify.
    """
    yk = luma(lin_key) if lin_key.ndim == 3 else lin_key
    yr = luma(lin_ref) if lin_ref.ndim == 3 else lin_ref
    ok = yk > lo
    ok &= yk < hi
    ok &= yr > lo
    ok &= yr < hi
    # indices once, then take: two boolean-mask selections cost 1.5x as much (1080p: 31 -> 21 ms)
    i = np.flatnonzero(ok)
    if i.size < min_pixels:
        return default
    r = float(np.median(np.ravel(yk).take(i) / np.ravel(yr).take(i)))
    return float(np.clip(r, 1 / 64, 64)) if np.isfinite(r) else default


class DISFlow:
    """DIS optical flow at reduced resolution (the longer side at most `max_side`), upsampled back."""

    def __init__(self, preset: int | str = cv2.DISOPTICAL_FLOW_PRESET_FAST, max_side: int = 320):
        self.preset = preset_id(preset) if isinstance(preset, str) else preset
        self.max_side = max_side

    def work_size(self, h: int, w: int) -> tuple[int, int]:
        """(height, width) DIS works at for an HxW frame."""
        s = min(1.0, self.max_side / max(h, w))
        # Both sides >= 32: OpenCV's DIS errors out, or segfaults (OpenCV 5.0), on tiny or very wide/tall
        # images (e.g. 9x17, 31x200); such frames are upsampled here and the flow rescaled back.
        return max(32, round(h * s)), max(32, round(w * s))

    def reduce(self, y: np.ndarray) -> np.ndarray:
        """An HxW image at the working size (area average; y itself when the frame is small)."""
        sh, sw = self.work_size(*y.shape)
        return y if (sh, sw) == y.shape else cv2.resize(y, (sw, sh), interpolation=cv2.INTER_AREA)

    def create(self):
        """A new OpenCV DIS object with this flow's settings (experiments override this)."""
        return cv2.DISOpticalFlow.create(self.preset)

    def initial_flow(self, a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
        """The flow DIS starts from for two uint8 images (None: zero; HomographyDIS: a feature homography)."""
        return None

    def calc(self, y_key: np.ndarray, y_ref: np.ndarray) -> np.ndarray:
        """Flow key->ref between two gamma-encoded luma images in [0, 1] of the working size, in their pixels."""
        a, b = ((y * 255 + 0.5).astype(np.uint8) for y in (y_key, y_ref))
        # A fresh object per call: DIS keeps internal state, and sharing one between threads is unsafe.
        return self.create().calc(a, b, self.initial_flow(a, b))

    @staticmethod
    def upsample(flow: np.ndarray, h: int, w: int) -> np.ndarray:
        """A working-size flow -> HxWx2 float32 in full-resolution pixels."""
        sh, sw = flow.shape[:2]
        if (sh, sw) != (h, w):
            flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR)
            flow[..., 0] *= w / sw
            flow[..., 1] *= h / sh
        return np.ascontiguousarray(flow, dtype=np.float32)

    def __call__(self, y_key: np.ndarray, y_ref: np.ndarray) -> np.ndarray:
        """y_*: HxW gamma-encoded luma in [0, 1] -> HxWx2 float32 flow key->ref in full-res pixels."""
        return self.upsample(self.calc(self.reduce(y_key), self.reduce(y_ref)), *y_key.shape)


def orb_features(img: np.ndarray, features: int = 1000) -> tuple[np.ndarray, np.ndarray | None]:
    """(keypoint positions Nx2 float32, ORB descriptors or None) of a uint8 image, for homography_flow()."""
    orb = cv2.ORB_create(features, fastThreshold=5, edgeThreshold=15, patchSize=15)
    kp, desc = orb.detectAndCompute(img, None)
    return np.float32([k.pt for k in kp]).reshape(-1, 2), desc


def homography_field(H: np.ndarray, h: int, w: int) -> np.ndarray | None:
    """HxWx2 float32 flow of the homography H (p -> H p), or None where it is not finite. Broadcast over rows and
    columns in float64: the same numbers as the products on a full HxWx3 grid (tested), with less memory traffic."""
    xs = np.arange(w, dtype=np.float64)[None, :]
    ys = np.arange(h, dtype=np.float64)[:, None]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        z = H[2, 0] * xs + H[2, 1] * ys + H[2, 2]
        f = np.empty((h, w, 2), np.float32)
        f[..., 0] = (H[0, 0] * xs + H[0, 1] * ys + H[0, 2]) / z - xs
        f[..., 1] = (H[1, 0] * xs + H[1, 1] * ys + H[1, 2]) / z - ys
    return f if np.isfinite(f).all() else None


def homography_from_features(fa, fb, shape: tuple[int, int], min_inliers: int = 12) -> np.ndarray | None:
    """The flow of the homography fitted (RANSAC) to cross-checked matches of two orb_features(), or None."""
    (pa, da), (pb, db) = fa, fb
    if da is None or db is None or len(pa) < min_inliers or len(pb) < min_inliers:
        return None
    m = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(da, db)
    if len(m) < min_inliers:
        return None
    H, inl = cv2.findHomography(pa[[x.queryIdx for x in m]], pb[[x.trainIdx for x in m]], cv2.RANSAC, 3.0)
    if H is None or inl is None or int(inl.sum()) < min_inliers:
        return None
    return homography_field(H, *shape)


def homography_flow(a: np.ndarray, b: np.ndarray, features: int = 1000, min_inliers: int = 12) -> np.ndarray | None:
    """Flow a -> b (HxWx2 float32, a's pixels) of the homography fitted to ORB matches of two uint8 images (RANSAC),
    or None where too few matches agree."""
    return homography_from_features(orb_features(a, features), orb_features(b, features), a.shape, min_inliers)


class HomographyDIS(DISFlow):
    """DIS started from homography_flow() of its two inputs (plain DIS where that is None). DIS alone, coarse to fine,
    misses camera motions of tens of pixels at the working size (18-57 px on far references of panning
    stills); a homography of feature matches finds them and DIS refines the rest. The engine uses it for ICAM's key ->
    reference pairs when the ICAM was trained on such pre-flows (icam.json "preflow_start": "homography").
    A key frame's image is the same in all its pairs (the reference is the one brought to the key's exposure), so
    its features are kept for the next pair (a few frames, keyed by the image's bytes)."""

    KEEP = 8   # key images whose features are kept

    def __init__(self, preset: int | str = cv2.DISOPTICAL_FLOW_PRESET_FAST, max_side: int = 320, features: int = 1000):
        super().__init__(preset, max_side)
        self.features = features
        self._kept: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def __getstate__(self):   # pickled for training's data workers: without the lock and the kept features
        return {"preset": self.preset, "max_side": self.max_side, "features": self.features}

    def __setstate__(self, st):
        self.__init__(st["preset"], st["max_side"], st["features"])

    def _key_features(self, a: np.ndarray):
        tag = (a.shape, hashlib.blake2b(a.tobytes(), digest_size=16).digest())
        with self._lock:
            hit = self._kept.get(tag)
            if hit is not None:
                self._kept.move_to_end(tag)
                return hit
        hit = orb_features(a, self.features)
        with self._lock:
            self._kept[tag] = hit
            while len(self._kept) > self.KEEP:
                self._kept.popitem(last=False)
        return hit

    def initial_flow(self, a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
        return homography_from_features(self._key_features(a), orb_features(b, self.features), a.shape)


def warp_np(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Sample img at p + flow (bilinear, border replicate)."""
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(img, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def warp_planes(x: np.ndarray, flow: np.ndarray, dtype=np.float16, rows: tuple[int, int] | None = None) -> np.ndarray:
    """Sample every plane of x (1xCxHxW) at p + flow (1x2xHxW, pixels): the warp of the training code
    (nets_common.warp: bilinear, coordinates clamped to the frame) done by OpenCV, one float32 plane
    at a time. FCPM's recurrent state is warped this way on the CPU (engine.Engine.prewarp).
    rows=(a, b): only output rows a..b-1 (a band), sampled from the whole of x."""
    _, c, h, w = x.shape
    a, b = rows if rows is not None else (0, h)
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(a, b, dtype=np.float32))
    # clamping = grid_sample's border padding; it also keeps NaN/huge flows from reaching OpenCV's
    # integer coordinate arithmetic
    mx = np.clip(np.nan_to_num(gx + flow[0, 0, a:b]), 0, w - 1).astype(np.float32, copy=False)
    my = np.clip(np.nan_to_num(gy + flow[0, 1, a:b]), 0, h - 1).astype(np.float32, copy=False)
    # only the source rows the band samples (bilinear also reads the row below), made float32 one
    # plane at a time: band-sized temporaries, not a full-frame float32 plane per channel and band
    # (those raised the 1080p render's peak RSS by 0.1-0.6 GB: vsvitm-memory-trace)
    y0 = int(np.floor(my.min())) if my.size else 0
    y1 = min(h, int(np.ceil(my.max())) + 2) if my.size else 0
    my -= np.float32(y0)
    out = np.empty((1, c, b - a, w), dtype)
    for i in range(c):
        src = np.asarray(x[0, i, y0:y1], np.float32)
        if out.dtype == np.float32:  # straight into the output plane (no temporary and copy)
            cv2.remap(src, mx, my, cv2.INTER_LINEAR, dst=out[0, i], borderMode=cv2.BORDER_REPLICATE)
        else:
            out[0, i] = cv2.remap(src, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out


def pool2(x: np.ndarray) -> np.ndarray:
    """The 2x2 mean of every plane of x (1xCxHxW float32, H and W even) by OpenCV: torch's
    F.avg_pool2d(x, 2) (INTER_AREA at exactly half size averages each 2x2 block)."""
    _, c, h, w = x.shape
    out = np.empty((1, c, h // 2, w // 2), np.float32)
    for i in range(c):
        out[0, i] = cv2.resize(x[0, i], (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    return out


def up2_plane(p: np.ndarray) -> np.ndarray:
    """2x bilinear upsampling of one HxW float32 plane by OpenCV: nets_common.up2 (pixel centres
    aligned, edges replicated)."""
    return cv2.resize(p, (2 * p.shape[1], 2 * p.shape[0]), interpolation=cv2.INTER_LINEAR)


def _encode(y: np.ndarray) -> np.ndarray:
    return np.power(np.clip(y, 0.0, 1.0), 1 / 2.2)


def align_pair(lin_key: np.ndarray, lin_ref: np.ndarray, flow_fn: DISFlow, exposure_norm: bool = True):
    """Pre-flow key->ref and exposure ratio (ref * ratio ~ key). Without exposure_norm the ratio is 1.

    The ratio is estimated twice: at co-located pixels (camera motion is small next to the exposure
    change), then again through the flow, which was computed on luma brought to the key's exposure.
    """
    return align_reduced(flow_fn.reduce(luma(lin_key)), flow_fn.reduce(luma(lin_ref)), lin_key.shape[:2], flow_fn,
                         exposure_norm)


def align_reduced(sk: np.ndarray, sr: np.ndarray, full: tuple[int, int], flow_fn: DISFlow, exposure_norm: bool = True,
                  peaks: tuple[np.ndarray, np.ndarray, float] | None = None):
    """The pre-flow from linear luma at DIS's working size (flow_fn.reduce): both exposure-ratio
    estimates and the flow are made there, then the flow is upsampled to full=(h, w). For frames
    up to max_side (training crops) the working size is the frame's, and nothing is resized.

    peaks=(key peak, ref peak, clip level): the frames' linear max-channel images at the working
    size; then a third value is returned, reference_clue() of the pair."""
    small = align_small(sk, sr, flow_fn, exposure_norm, peaks)
    return (flow_fn.upsample(small[0], *full),) + small[1:]


def align_small(sk: np.ndarray, sr: np.ndarray, flow_fn: DISFlow, exposure_norm: bool = True,
                peaks: tuple[np.ndarray, np.ndarray, float] | None = None):
    """align_reduced() with the flow left at the working size (what the plugin caches: 0.46 MB for a
    1080p pair instead of 16.6 MB; flow_fn.upsample makes the full-resolution flow when it is used)."""
    e = exposure_ratio(sk, sr) if exposure_norm else 1.0
    flow = flow_fn.calc(_encode(sk), _encode(sr * e))
    # the ratio through the flow (None: too few pixels well exposed in both to tell)
    e_flow = exposure_ratio(sk, warp_np(sr, flow), default=None) if exposure_norm or peaks is not None else None
    if exposure_norm:
        e = 1.0 if e_flow is None else e_flow
    out = flow, np.float32(e)
    if peaks is None:
        return out
    pk, pr, level = peaks
    # Without exposure normalisation the networks get ratio 1, but whether the reference saw something
    # is still a question of exposure, so the clue uses the estimate.
    return out + (reference_clue(pk, warp_np(pr, flow), e_flow, level),)


def reference_clue(peak_key: np.ndarray, peak_ref_warped: np.ndarray, ratio: float | None, level: float,
                   margin: float = 1.02) -> float:
    """Fraction of the frame where the reference shows what the key clipped: the key is at or above
    the clip level (linear max channel), while the reference, aligned to the key, is below it
    and, brought to the key's exposure, above it (by `margin`, so ratio noise around 1 does not count).
    A reference taken at the key's exposure or brighter has no such pixels: it cannot add radiance
    the key lost (the temporal clue is an exposure change). Inputs at DIS's working size.
    ratio None (unknown: too few pixels well exposed in both) gives 1 when the key clips anywhere:
    no reason to drop the reference."""
    clipped = peak_key >= level
    if not clipped.any():
        return 0.0
    if ratio is None:
        return 1.0
    if ratio <= margin:   # nothing the reference sees, brought to the key's exposure, exceeds the key's clip
        return 0.0
    clipped &= peak_ref_warped < level
    clipped &= peak_ref_warped * np.float32(ratio) > level * margin
    return float(np.count_nonzero(clipped)) / clipped.size
