"""What every stage of an ITM graph shares: frame props, shifted clips, the Graph (the engine, the
schedule, the input as display RGB, templates, each frame's window of cuts)."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np
import vapoursynth as vs

from ..schedule import Schedule
from ..vsnp import array_to_frame

PROP_KEY = "VSVITM_KeyFrame"
PROP_REFS = "VSVITM_References"
PROP_REFS_USED = "VSVITM_ReferencesUsed"   # the references whose step ran: ref_keep nearest + passed ref_gate (icam mode, key results)
PROP_KEYS = "VSVITM_Keys"
PROP_CUT = "_VSVITM_Cut"
PROP_CUTS = "_VSVITM_Cuts"  # a window frame's cut positions within reach of its frame ([-1]: none)
PROP_EVIDENCE = "_VSVITM_Evidence"  # a key result's reference evidence (bytes of HxW half floats)
PROP_TRUST = "_VSVITM_Trust"  # a key frame's radiance map's trust (bytes of HxWx3 half floats; mode "temporal")
PROP_CONFIDENCE = "VSVITM_Confidence"  # mean confidence of the temporal correction over the frame's clipped channels


def as_list(v) -> list:
    """Frame props hold one-element arrays as scalars."""
    return [v] if isinstance(v, (int, float)) else list(v)


class Shifter:
    """Shifted views of a clip: shift(d) has frame n = clip[n + d] (clamped), built once per offset."""

    def __init__(self, clip: vs.VideoNode):
        self.clip, self._d, self._lock = clip, {}, threading.Lock()

    def __call__(self, d: int) -> vs.VideoNode:
        with self._lock:
            c = self._d.get(d)
            if c is None:
                clip, n = self.clip, self.clip.num_frames
                if d == 0 or abs(d) >= n:
                    c = clip
                elif d > 0:
                    c = clip[d:] + clip[-1] * d
                else:
                    c = clip[0] * (-d) + clip[:d]
                self._d[d] = c
            return c


@dataclass
class Graph:
    """The shared pieces of one ITM graph.

    core: VapourSynth's core; eng: the Engine; sched: the Schedule; rgb: the input as display RGB48;
    rgb_at: its shifted views; ref_at: the references' shifted views (RGB24 from an 8-bit source);
    ref_id: a reference's id for the engine's caches; blank: RGBS frames without props; tmpl: blank
    frames with each source frame's props (what outputs are made from); ykey: blank RGBH frames (key
    results); window: per frame, the cuts within reach (cuts.cut_window)."""
    core: object
    eng: object
    sched: Schedule
    rgb: vs.VideoNode
    rgb_at: Shifter
    ref_at: Shifter
    ref_id: Callable
    blank: vs.VideoNode
    tmpl: vs.VideoNode
    ykey: vs.VideoNode
    window: vs.VideoNode = None

    @staticmethod
    def cuts_of(f: vs.VideoFrame) -> list[int]:
        """The cut positions a window frame carries."""
        return [c for c in as_list(f.props[PROP_CUTS]) if c >= 0]

    def from_array(self, template: vs.VideoNode, arr: np.ndarray, props: dict | None = None) -> vs.VideoNode:
        """A clip of `template`'s frames holding `arr` (a cached result) and `props`."""
        def make(n, f):
            out = f.copy()
            array_to_frame(arr, out)
            for k, v in (props or {}).items():
                out.props[k] = v
            return out
        return self.core.std.ModifyFrame(template, template, make)
