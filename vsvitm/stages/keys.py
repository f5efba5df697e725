"""ICAM key results (modes "icam" and "full"): a key frame's Y from itself and its references, with the
references that ran and, for a merge that reads it, the evidence behind Y as frame props; mode "icam"
blends one on every frame."""
from __future__ import annotations

import numpy as np
import vapoursynth as vs

from ..vsnp import array_to_frame, frame_to_array, frame_to_code
from .common import PROP_EVIDENCE, PROP_KEY, PROP_REFS, PROP_REFS_USED, Graph
from .temporal import gated_refs


def key_results(g: Graph, every_frame: bool, ref_keep: int) -> vs.VideoNode:
    """RGBH clip: on key frames (every frame with every_frame) ICAM's Y from the frame and its
    references (requested as shifted `ref_at` clips); blank elsewhere. Computed once per frame (the
    engine's result cache). A key result frame holds ICAM's Y; with a merge that reads it, the
    reference evidence behind Y travels with it as a frame property (half floats, HxW), so one ICAM
    call serves both. ref_keep: references each way that always run (the rest pass the engine's gate)."""
    core, eng, sched, ykey = g.core, g.eng, g.sched, g.ykey

    def with_result(out: vs.VideoFrame, res: tuple, refs: list[int]) -> vs.VideoFrame:
        array_to_frame(res[0], out)
        out.props[PROP_REFS] = refs or [-1]
        out.props[PROP_REFS_USED] = res[2] or [-1]
        if eng.merge_evidence:
            out.props[PROP_EVIDENCE] = res[1].astype(np.float16).tobytes()
        return out

    def key_node(n: int, f: vs.VideoFrame) -> vs.VideoNode:
        c = g.cuts_of(f)
        if not every_frame and not sched.is_key(n, c):
            return ykey
        refs = sched.references(n, c)
        hit = eng.results.get(("key", n))
        if hit is not None:
            return core.std.ModifyFrame(ykey, ykey, lambda n, f: with_result(f.copy(), hit, refs))

        def compute(n, f):
            code_k = frame_to_code(f[1])
            given = [(g.ref_id(r), lambda fr=fr: frame_to_code(fr)) for r, fr in zip(refs, f[2:])]
            used = gated_refs(eng, n, code_k, refs, given, ref_keep, sched.ref_stride)
            passed = {i for i, _ in used}
            res = eng.icam(n, code_k, used) + ([r for r in refs if g.ref_id(r) in passed],)
            eng.results.put(("key", n), res)
            return with_result(f[0].copy(), res, refs)
        return core.std.ModifyFrame(ykey, [ykey, g.rgb] + [g.ref_at(r - n) for r in refs], compute)

    return core.std.FrameEval(ykey, key_node, prop_src=[g.window])


def icam_output(g: Graph, keyres: vs.VideoNode) -> vs.VideoNode:
    """Mode "icam": every frame's key result blended with f^-1(L) (eq. 1)."""
    def blend_icam(n, f):
        out = f[0].copy()
        array_to_frame(g.eng.blend(frame_to_code(f[1]), frame_to_array(f[2])), out)
        out.props[PROP_KEY] = 1
        out.props[PROP_REFS] = f[2].props.get(PROP_REFS, [-1])
        out.props[PROP_REFS_USED] = f[2].props.get(PROP_REFS_USED, [-1])
        return out
    return g.core.std.ModifyFrame(g.tmpl, [g.tmpl, g.rgb, keyres], blend_icam)
