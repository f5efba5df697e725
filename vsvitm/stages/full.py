"""Mode "full" (the paper's pipeline) after the key results: each frame's FCPM merge of the nearest key
results (X^_t), then the bidirectional recurrence over the chunk holding it, blended with f^-1(L)."""
from __future__ import annotations

import threading

import numpy as np
import vapoursynth as vs

from ..vsnp import array_to_frame, frame_to_array, frame_to_code, frame_to_planes
from .common import PROP_EVIDENCE, PROP_KEY, PROP_KEYS, PROP_REFS, Graph, Shifter


def merged_frames(g: Graph, keyres: vs.VideoNode, width: int, height: int) -> vs.VideoNode:
    """Padded RGBH clip: frame t holds X^_t, merged from the nearest key results (keyres).

    X^ is log(Y + EPS) in [-7, 8.3]: half floats keep it to 2^-11 relative (Y within 0.4 % at the
    top of the range, 0.1 % for Y < 7) and halve what a chunk holds: its 24 merged frames were
    600 MB at 1920x1080."""
    core, eng, sched = g.core, g.eng, g.sched
    key_at = Shifter(keyres)
    hp, wp = -(-height // eng.modulus) * eng.modulus, -(-width // eng.modulus) * eng.modulus
    xclip = core.std.BlankClip(g.blank, width=wp, height=hp, format=vs.RGBH, keep=True)

    def evidence(fr: vs.VideoFrame) -> np.ndarray | None:
        if not eng.merge_evidence:
            return None
        return np.frombuffer(fr.props[PROP_EVIDENCE], np.float16).reshape(fr.height, fr.width)

    def merge_node(n: int, f: vs.VideoFrame) -> vs.VideoNode:
        t = n
        keys = sched.nearest_keys(t, g.cuts_of(f))
        # Neighbouring chunks overlap by their margins: keep X^_t so the second chunk does not merge again.
        mkey = ("merge", t, tuple(keys))
        hit = eng.results.get(mkey)
        if hit is not None:
            return g.from_array(xclip, hit, {PROP_KEYS: keys})

        def compute(n, f):
            code_t = frame_to_code(f[1])
            ks = [(k, lambda j=j: frame_to_code(f[2 + 2 * j]), lambda j=j: frame_to_array(f[3 + 2 * j]),
                   lambda j=j: evidence(f[3 + 2 * j])) for j, k in enumerate(keys)]
            x = np.ascontiguousarray(eng.merge(t, code_t, ks)[0].transpose(1, 2, 0), np.float16)
            eng.results.put(mkey, x)
            out = f[0].copy()
            array_to_frame(x, out)
            out.props[PROP_KEYS] = keys
            return out
        clips = [xclip, g.rgb]
        for k in keys:
            clips += [g.rgb_at(k - t), key_at(k - t)]
        return core.std.ModifyFrame(xclip, clips, compute)

    return core.std.FrameEval(xclip, merge_node, prop_src=[g.window])


class _ChunkLocks:
    """One lock per chunk, so that neighbours requested together share one computation."""

    def __init__(self):
        self.locks: dict = {}
        self.guard = threading.Lock()

    def __call__(self, key) -> threading.Lock:
        with self.guard:
            if len(self.locks) > 64:
                self.locks.clear()
            return self.locks.setdefault(key, threading.Lock())


def full_output(g: Graph, merged: vs.VideoNode) -> vs.VideoNode:
    """Frame t: the bidirectional refinement over the chunk holding t (engine.propagate, once per
    chunk), then eq. 1."""
    core, eng, sched, tmpl = g.core, g.eng, g.sched, g.tmpl
    merged_at = Shifter(merged)
    chunk_lock = _ChunkLocks()

    def out_node(n: int, f: vs.VideoFrame) -> vs.VideoNode:
        t = n
        c = g.cuts_of(f)
        core_s, core_e, run_s, run_e = sched.chunk_of(t, c)
        ckey = ("chunk", core_s, core_e, run_s, run_e)
        hit = eng.results.get(ckey)
        is_key = int(sched.is_key(t, c))
        props = {PROP_KEY: is_key, PROP_KEYS: sched.nearest_keys(t, c),
                 PROP_REFS: (sched.references(t, c) if is_key else []) or [-1]}
        if hit is not None:
            y = hit[t]

            def done(n, f):
                out = f[0].copy()
                array_to_frame(eng.blend(frame_to_code(f[1]), y), out)
                out.props.update(props)
                return out
            return core.std.ModifyFrame(tmpl, [tmpl, g.rgb], done)
        run = list(range(run_s, run_e))

        def compute(n, f):
            template, frames = f[0], f[1:]
            with chunk_lock(ckey):  # neighbours requested together share one computation
                ys = eng.results.get(ckey)
                if ys is None:
                    # frames become arrays when the engine needs them, not all at once (memory at 1080p)
                    ys = eng.propagate(run, lambda i: frame_to_code(frames[i]),
                                       lambda i: frame_to_planes(frames[len(run) + i])[None], range(core_s, core_e))
                    eng.results.put(ckey, ys)
            out = template.copy()
            array_to_frame(eng.blend(frame_to_code(frames[run.index(t)]), ys[t]), out)
            out.props.update(props)
            return out
        clips = [tmpl] + [g.rgb_at(tt - t) for tt in run] + [merged_at(tt - t) for tt in run]
        return core.std.ModifyFrame(tmpl, clips, compute)

    return core.std.FrameEval(g.blank, out_node, prop_src=[g.window])
