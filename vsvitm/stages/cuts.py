"""Scene cuts: a frame starts a new shot (source props, or a thumbnail detector), and each frame's
window of the cuts within the schedule's reach, which every stage reads (no reference, key frame or
chunk crosses a shot boundary)."""
from __future__ import annotations

import numpy as np
import vapoursynth as vs

from ..vsnp import frame_to_array
from .common import PROP_CUT, PROP_CUTS, Shifter

_CUT_LUMA = np.float32([0.2126, 0.7152, 0.0722])


def thumbnail_luma(rgb: np.ndarray) -> np.ndarray:
    """The cut detector's view of a frame: the luma of its RGB thumbnail divided by its mean, so that
    exposure changes (the temporal clues we are after) are not cuts."""
    y = rgb @ _CUT_LUMA
    return y / max(float(y.mean()), 1e-3)


def thumbnail_cut(y: list[np.ndarray], n: int, n_frames: int, threshold: float) -> bool:
    """The detector's rule for frame n, from thumbnail_luma() of frames n-2, n-1, n, n+1 (clamped to the clip):
    d(n) = mean |y(n) - y(n-1)| above `threshold` and above 2.5x its neighbours d(n-1), d(n+1) (fast pans are not cuts)."""
    d = float(np.abs(y[2] - y[1]).mean())
    before = float(np.abs(y[1] - y[0]).mean()) if n > 1 else 0.0
    after = float(np.abs(y[3] - y[2]).mean()) if n + 1 < n_frames else 0.0
    return d > threshold and d > 2.5 * max(before, after)


def scene_cuts(core, rgb: vs.VideoNode, threshold: float) -> vs.VideoNode:
    """Tiny clip: frame i carries PROP_CUT = 1 when a new shot starts at i.

    Source props (_SceneChangePrev on i, _SceneChangeNext on i-1) win when present. Otherwise a
    thumbnail detector: d(i) = mean |a/mean(a) - b/mean(b)| of luma thumbnails of frames i-1 and i
    (normalised so exposure changes, the temporal clues we are after, are not cuts); a cut is a
    d(i) above `threshold` that also stands out from its neighbours d(i-1), d(i+1) (fast pans do not).
    """
    thumb = core.resize.Bilinear(rgb, 64, 36, format=vs.RGBS)
    at = Shifter(thumb)
    blank = core.std.BlankClip(thumb, width=1, height=1, format=vs.GRAYS, keep=True)
    n_frames = rgb.num_frames

    def flag(n: int, f: list[vs.VideoFrame]) -> vs.VideoFrame:
        out = f[0].copy()
        cut = 0
        if n > 0:
            cur, pre = f[3].props, f[2].props
            if "_SceneChangePrev" in cur or "_SceneChangeNext" in pre:
                cut = int(bool(cur.get("_SceneChangePrev", 0)) or bool(pre.get("_SceneChangeNext", 0)))
            else:
                y = [thumbnail_luma(frame_to_array(fr)) for fr in f[1:]]   # frames n-2, n-1, n, n+1 (clamped)
                cut = int(thumbnail_cut(y, n, n_frames, threshold))
        out.props[PROP_CUT] = cut
        return out

    return core.std.ModifyFrame(blank, [blank, at(-2), at(-1), thumb, at(1)], flag)


def cut_window(core, rgb: vs.VideoNode, threshold: float, reach: int) -> vs.VideoNode:
    """Tiny clip: frame n carries PROP_CUTS, the cut positions within n +- reach (a ModifyFrame over
    shifted scene_cuts)."""
    cuts = scene_cuts(core, rgb, threshold)
    cut_at = Shifter(cuts)
    tiny = core.std.BlankClip(cuts, keep=True)
    n_frames = rgb.num_frames
    offsets = [d for d in range(-reach, reach + 1) if 0 < abs(d) < n_frames or d == 0]

    def gather_cuts(n: int, f: list[vs.VideoFrame]) -> vs.VideoFrame:
        out = f[0].copy()
        out.props[PROP_CUTS] = [n + d for d, fr in zip(offsets, f[1:])
                                if 0 < n + d < n_frames and fr.props[PROP_CUT]] or [-1]
        return out

    return core.std.ModifyFrame(tiny, [tiny] + [cut_at(d) for d in offsets], gather_cuts)
