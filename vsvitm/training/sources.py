"""Training sources: linear HDR stills and HDR video frames from the shared data, as image pyramids,
and how a training batch draws one (train/test split, video weight, highlight knee)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ..curves import max_channel
from .exr import read_exr

LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)
IMAGE_EXTS = (".exr", ".hdr")



@dataclass(eq=False)
class Source:
    """Linear HDR material: 1 frame for a still, many for a video (float32 HxWx3 each)."""
    name: str
    frames: list[np.ndarray]
    paths: list[str] = field(default_factory=list, repr=False)
    _pyr: dict = field(default_factory=dict, repr=False)

    @property
    def is_video(self) -> bool:
        """More than one frame."""
        return len(self.frames) > 1

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of its frames."""
        return self.frames[0].shape[:2]

    def pyramid(self, i: int) -> list[np.ndarray]:
        """Cached 2x INTER_AREA pyramid of frame i (level L pixel centres at base 2^L x + (2^L-1)/2).

        i: the frame.
        """
        p = self._pyr.get(i)
        if p is None:
            p = [np.ascontiguousarray(self.frames[i], dtype=np.float32)]
            while min(p[-1].shape[:2]) >= 16:
                a = p[-1]
                h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
                p.append(cv2.resize(a[:h, :w], (w // 2, h // 2), interpolation=cv2.INTER_AREA))
            self._pyr[i] = p
        return p


def luminance(rgb: np.ndarray) -> np.ndarray:
    """BT.709 luminance of linear RGB [..., 3].

    rgb: linear RGB.
    """
    return rgb @ LUMA


def read_image(path: str | Path) -> np.ndarray:
    """A linear HDR image (.exr, or .hdr through OpenCV) as float32 RGB [H, W, 3].

    path: the file.
    """
    path = str(path)
    if path.lower().endswith(".exr"):
        return read_exr(path)
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH | cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"vsvitm: cannot read {path} (unsupported by this cv2 build?)")
    img = img.astype(np.float32)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = img[..., 2::-1]
    return np.maximum(np.nan_to_num(img, nan=0.0, posinf=0.0, neginf=0.0), 0.0).astype(np.float32)


def _limit(img: np.ndarray, max_side: int | None) -> np.ndarray:
    if max_side and max(img.shape[:2]) > max_side:
        f = max_side / max(img.shape[:2])
        img = cv2.resize(img, (max(1, round(img.shape[1] * f)), max(1, round(img.shape[0] * f))),
                         interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img, dtype=np.float32)


def make_source(name: str, paths: Sequence[str | Path], max_side: int | None = 1024,
                normalise: bool = True) -> Source:
    """A Source of these frames.

    name: its name.
    paths: its frames' files, in order.
    max_side: larger images are scaled down to this longer side (INTER_AREA); None: kept.
    normalise: scale every frame by one factor so the median luminance is 0.18.
    """
    frames = [_limit(read_image(p), max_side) for p in paths]
    if normalise:
        meds = []
        for f in frames:
            y = luminance(f[::4, ::4])
            y = y[y > 0]
            meds.append(float(np.median(y)) if y.size else 0.0)
        med = float(np.median(meds))
        if med > 0:
            s = np.float32(0.18 / med)
            frames = [f * s for f in frames]
    return Source(name, frames, [str(p) for p in paths])


TRAIN_SPEC = {
    "stills": ["hdr-stills/openexr-images/**/*.exr", "hdr-stills/polyhaven/*.exr",
               "hdr-stills/libavif/cosmos1650_linear709.exr"],
    "videos": ["hdr-video/androidx/frames_exr/hdr10-av1", "hdr-video/tears-of-steel/frames_exr/ToS-s07"],
}
TEST_SPEC = {
    "stills": ["hdr-stills/libavif/seine_hdr_srgb_linear709.exr",
               "hdr-stills/ultrahdr/ultraHDR_hdr_linear_rel_sdrwhite.exr"],
    "videos": ["hdr-video/androidx/frames_exr/hdr10-video-with-sdr-container",
               "hdr-video/androidx/frames_exr/roadtrip-vp92-10bit", "hdr-video/tears-of-steel/frames_exr/ToS-s01"],
}


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def is_shared_layout(root: Path) -> bool:
    """Whether a data folder has the shared data's layout (hdr-stills/ and hdr-video/).

    root: the data folder.
    """
    return (root / "hdr-stills").is_dir() and (root / "hdr-video").is_dir()


def source_paths(data_root: str | Path, split: str = "train") -> list[tuple[str, list[Path]]]:
    """(name, frame paths) per source, without reading any pixels.

    data_root: the data folder.
    split: "train" or "test" (the shared layout's held-out sources).
    """
    root = Path(data_root)
    if not root.is_dir():
        raise FileNotFoundError(f"vsvitm: data folder {root} does not exist")
    out: list[tuple[str, list[Path]]] = []
    if is_shared_layout(root):
        if split not in ("train", "test"):
            raise ValueError(f"vsvitm: split must be 'train' or 'test', not {split!r}")
        spec = TRAIN_SPEC if split == "train" else TEST_SPEC
        for pat in spec["stills"]:
            for p in sorted(root.glob(pat)):
                out.append((p.relative_to(root).with_suffix("").as_posix(), [p]))
        for d in spec["videos"]:
            frames = _images_in(root / d) if (root / d).is_dir() else []
            if frames:
                out.append((Path(d).as_posix(), frames))
        return out
    # A user's own folder: loose images -> stills; any sub-folder with >= 2 images -> a video.
    for dirpath, dirnames, _ in os.walk(root):
        dirnames.sort()
        d = Path(dirpath)
        imgs = _images_in(d)
        if d == root or len(imgs) < 2:
            for p in imgs:
                out.append((p.relative_to(root).with_suffix("").as_posix(), [p]))
        else:
            out.append((d.relative_to(root).as_posix(), imgs))
    return out


def highlight_knee(src: Source, rng: np.random.Generator, stops: tuple[float, float] = (0.3, 2.0),
                   percentile: tuple[float, float] = (90.0, 99.0)) -> Source:
    """A copy of ``src`` whose highlights roll off like a graded master: above the knee c (a high
    percentile of the max channel) values approach c * 2^h, h drawn from ``stops``. HDR stills of
    sun, sky and lamps keep many stops above the clip level; mastered HDR video rarely does. Training
    on both teaches the network that a clipped region may hold little more than the clip level.

    src: the source.
    rng: the random generator.
    stops: range of h, stops above the knee.
    percentile: range of the knee's percentile of the max channel.
    """
    c = float(np.percentile(max_channel(src.frames[len(src.frames) // 2][::4, ::4]), rng.uniform(*percentile)))
    if c <= 0:
        return src
    top = np.float32(c * (2.0 ** rng.uniform(*stops) - 1.0))

    def knee(f: np.ndarray) -> np.ndarray:
        m = max_channel(f)[..., None]
        over = np.maximum(m - c, 0)
        m2 = np.minimum(m, c) + over / (1 + over / top)
        return np.ascontiguousarray(f * (m2 / np.maximum(m, 1e-9)), dtype=np.float32)
    return Source(src.name + "+knee", _LazyFrames(src.frames, knee), src.paths)


class _LazyFrames(Sequence):
    """fn(frame) of each frame, computed when first asked for: a training sample reads a few frames of
    a source, and a graded copy of a 64-frame video was most of a batch's synthesis time."""

    def __init__(self, frames: Sequence[np.ndarray], fn):
        self._frames, self._fn, self._done = frames, fn, {}

    def __len__(self) -> int:
        return len(self._frames)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = range(len(self))[i]
        f = self._done.get(i)
        if f is None:
            f = self._done[i] = self._fn(self._frames[i])
        return f


def pick_source(sources: Sequence[Source], rng: np.random.Generator, video_weight: float | None = None,
                knee: float = 0.0) -> Source:
    """A training source: uniform over ``sources`` or, with ``video_weight``, a video with that
    probability (real motion and grading; the shared data holds 2 videos and 28 stills); with
    probability ``knee`` its highlights are rolled off (:func:`highlight_knee`). With the defaults it
    draws once (one ``rng.integers``), as a run without these options does, so such runs repeat.

    sources: the training sources.
    rng: the random generator.
    video_weight: probability of a video (None: uniform over all sources).
    knee: probability of a highlight roll-off.
    """
    vids = [s for s in sources if s.is_video]
    stills = [s for s in sources if not s.is_video]
    if video_weight is not None and vids and stills:
        pool = vids if rng.random() < video_weight else stills
    else:
        pool = list(sources)
    src = pool[int(rng.integers(len(pool)))]
    if knee > 0 and rng.random() < knee:
        src = highlight_knee(src, rng)
    return src


def load_sources(data_root: str | Path, split: str = "train", max_side: int | None = 1024) -> list[Source]:
    """Load HDR sources. With the shared data layout, ``split`` picks the training or the (held-out)
    development-test material; any other folder is read as loose stills plus frame folders (videos).
    Each source is scaled so its median luminance is 0.18; images larger than ``max_side`` are
    downscaled (INTER_AREA).

    data_root: the data folder.
    split: "train" or "test" (the shared layout's held-out sources).
    max_side: larger images are scaled down to this longer side; None: kept.
    """
    srcs = [make_source(name, paths, max_side) for name, paths in source_paths(data_root, split)]
    if not srcs:
        raise FileNotFoundError(f"vsvitm: no .exr/.hdr images found under {data_root}")
    return srcs
