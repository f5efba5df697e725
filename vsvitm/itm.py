"""vsvitm.ITM: the VapourSynth filter graph around the engine.

Stages, each a clip whose frames are produced on demand by VapourSynth (vsvitm.stages):
  rgb     the input as display-referred code values, RGB48 (each source frame converted once; half
          the memory of RGBS: at 1920x1080 VapourSynth holds dozens of these frames in flight);
          ICAM's references from an 8-bit source as RGB24
  tmpl    blank RGBS frames carrying each source frame's props: what output frames are made from
  window  per frame n: the cut positions within n +- reach (stages.cuts)
mode "temporal" (the default; stages.temporal):
  single  per frame t: S_t, single-frame ICAM (half floats)
  keymap  per key frame k: its radiance map and trust (ICAM with references, raised only, and the
          references' measured radiance; vsvitm.temporal)
  out     per frame t: S_t corrected from the key frames before and after t, then eq. 1
mode "full" (the paper's pipeline; stages.keys, stages.full):
  keyres  per key frame k: ICAM's Y_k (half floats), from k and its references (requested as shifted
          `rgb` clips, or RGB24 ones from an 8-bit source),
          with the reference evidence behind it as a frame property when the merge reads it
  merged  per frame t: X^_t from the nearest key results (FCPM merge; half floats)
  out     per frame t: the chunk's bidirectional refinement, blended with f^-1(L) (eq. 1)
No callback ever calls get_frame: every frame a stage needs is requested through ModifyFrame clips
chosen by FrameEval, so VapourSynth schedules and parallelises all of it without deadlocks. The one
get_frame outside them is the temporal mode's key frame made ahead, from its own thread (KeyAhead).
"""
from __future__ import annotations

import vapoursynth as vs

from .colour import set_linear_props, to_display_rgb, validate_clip
from .curves import check_transfer, to_linear
from .engine import Engine, allocator
from .schedule import Schedule
from .stages.common import (PROP_CONFIDENCE, PROP_CUT, PROP_EVIDENCE, PROP_KEY, PROP_KEYS,  # noqa: F401
                            PROP_REFS, PROP_REFS_USED, PROP_TRUST, Graph, Shifter, as_list)
from .stages.cuts import cut_window, thumbnail_cut, thumbnail_luma  # noqa: F401
from .stages.full import full_output, merged_frames
from .stages.keys import icam_output, key_results
from .stages.temporal import EVIDENCE_GAIN, _temporal_stages, gated_refs, key_weights  # noqa: F401
from .tuning import Tuning, as_tuning
from .vsnp import array_to_frame, frame_to_code

MODES = ("temporal", "full", "icam", "linear")
# ITM's chunk and margin (Tuning): the FCPM recurrence runs over chunk + 2 * margin frames to output
# `chunk` of them. Below 1 MP: chunk 24, margin 3 = 1.25 recurrent steps per output frame (12 and
# 6 would be 2 steps), with the same scores on the development and validation sets; a margin of 3
# changes no pixel by more than 0.3 % against a margin of 12, chunk edges included
# (BENCHMARKS.md). From 1 MP on, 12 and 6: a chunk's
# source and merged frames (~24 MB a frame at 1920x1080) and the keys it waits on weigh on the CPU
# render's 4 GB peak (one 1080p render with margin 3 peaked at 4023 MiB against 3534-3565 with 6).
CHUNK_SMALL, MARGIN_SMALL = 24, 3
CHUNK_LARGE, MARGIN_LARGE = 12, 6
LARGE_PIXELS = 1 << 20
# Key-frame spacing and references each way by mode. "full" and "icam": the paper's stride 6; 4 references
# each way (the paper's 6 scored the same on the validation set and took 12 % more time). "temporal": a
# key frame every 12 frames with 2 references each way, which keeps it within 3x the time of
# single-frame ICAM at 512x512; on the validation pans it keeps most of the gain of 6 and 4
# (all/OE/clue PU21-PSNR 29.54/15.87/24.73 against 29.63/16.00/24.86; single frame 29.28/15.48/24.61).
KEY_STRIDE = {"temporal": 12, "full": 6, "icam": 6, "linear": 6}
NUM_REFS = {"temporal": 2, "full": 4, "icam": 4, "linear": 4}


def chunk_and_margin(width: int, height: int, chunk: int | None = None, margin: int | None = None) -> tuple[int, int]:
    """(chunk, margin) that ITM uses at this frame size: the ones given, the size's defaults for None."""
    dc, dm = (CHUNK_LARGE, MARGIN_LARGE) if width * height >= LARGE_PIXELS else (CHUNK_SMALL, MARGIN_SMALL)
    return (dc if chunk is None else chunk), (dm if margin is None else margin)


def ITM(clip: vs.VideoNode, *, mode: str = "temporal", key_stride: int | None = None, ref_stride: int = 15,
        num_refs: int | None = None, transfer: str = "gamma2.2", threshold: float = 0.95,
        scene_threshold: float = 0.2, fp16_output: bool = False, backend=None, models=None,
        tuning: Tuning | dict | None = None) -> vs.VideoNode:
    """Inverse tone mapping LDR -> HDR with temporal clues.

    Returns RGBS (RGBH with fp16_output=True), linear light, BT.709 primaries, 1.0 = the input's white.

    :param clip: the LDR input (any constant-format RGB, YUV or GRAY clip; its props say its matrix
        and range).
    :param mode: "temporal" (default: single-frame ICAM on every frame, corrected in clipped channels
        by the radiance that key frames and their references measured, where evidence backs it;
        without evidence the result is single-frame ICAM's), "full" (the paper's pipeline: ICAM on
        key frames, FCPM on every frame), "icam" (ICAM with references on every frame; with
        num_refs=0 the single-frame baseline), "linear" (f^-1(L) only, nothing recovered).
    :param key_stride: frames between key frames (a key frame runs ICAM with its references); None: 12
        in mode "temporal", 6 in the others (KEY_STRIDE).
    :param ref_stride: frames between a key frame's references (k +- ref_stride * i).
    :param num_refs: references each way of a key frame; None: 2 in mode "temporal", 4 in the others
        (NUM_REFS); 0: no references, single-frame everywhere.
    :param transfer: the camera curve f that made the LDR ("gamma2.2", "srgb", "bt1886"); f^-1
        linearises it.
    :param threshold: code value above which a pixel counts as over-exposed (0.95, the paper's).
    :param scene_threshold: thumbnail difference above which a frame starts a new shot (no reference
        or key frame crosses a shot boundary); source props _SceneChangePrev/_SceneChangeNext win.
    :param fp16_output: RGBH output instead of RGBS (half the memory, 2^-11 relative precision).
    :param backend: vsvitm.Backend.ORT_CPU(...) or ORT_CUDA(...); None picks CUDA when it works, else
        the CPU.
    :param models: folder of exported ONNX graphs (default: the package's shipped models).
    :param tuning: the expert knobs (vsvitm.Tuning, or a dict of its fields): exposure normalisation,
        pre-flow preset, reference gate, cache size, FCPM chunks, the temporal mode's key-frame parts.
    """
    tuning = as_tuning(tuning)
    check_args(clip, mode, transfer, threshold, fp16_output, tuning)
    core = vs.core
    key_stride = KEY_STRIDE[mode] if key_stride is None else key_stride
    num_refs = NUM_REFS[mode] if num_refs is None else num_refs
    chunk, margin = chunk_and_margin(clip.width, clip.height, tuning.chunk, tuning.margin)
    sched = Schedule(clip.num_frames, key_stride, ref_stride, num_refs, chunk=chunk, margin=margin)
    rgb = to_display_rgb(clip, format=vs.RGB48)
    out_fmt = vs.RGBH if fp16_output else vs.RGBS
    if mode == "linear":
        return finish(core, linear_output(core, rgb, transfer), out_fmt)
    eng = Engine(models, backend, need_fcpm=(mode == "full"), transfer=transfer, threshold=threshold,
                 exposure_norm=tuning.exposure_norm, cache_bytes=tuning.cache_mb << 20, ref_gate=tuning.ref_gate,
                 preflow=tuning.preflow)
    if eng.on_cpu and clip.width * clip.height >= allocator.TRIM_PIXELS:
        allocator.mmap_large_blocks()  # large blocks back to the system when freed (why: allocator.MMAP_THRESHOLD)
    if mode == "full":
        fcpm_keys = tuning.fcpm_keys
        if fcpm_keys is not None and not (isinstance(fcpm_keys, int) and 1 <= fcpm_keys <= eng.fcpm_keys):
            raise ValueError(f"vsvitm.ITM: fcpm_keys must be an integer from 1 to {eng.fcpm_keys} (the model's), "
                             f"got {fcpm_keys!r}")
        sched = Schedule(clip.num_frames, key_stride, ref_stride, num_refs, fcpm_keys=fcpm_keys or eng.fcpm_keys,
                         chunk=chunk, margin=margin)
    g = graph(core, clip, rgb, eng, sched, scene_threshold)
    if mode == "icam":
        return finish(core, icam_output(g, key_results(g, True, tuning.ref_keep)), out_fmt)
    if mode == "temporal":
        return finish(core, _temporal_stages(core, eng, sched, g.window, g.cuts_of, g.tmpl, g.rgb, g.rgb_at, g.ref_at,
                                             g.ref_id, g.ykey, tuning.key_network, tuning.key_fill,
                                             tuning.ref_keep), out_fmt)
    merged = merged_frames(g, key_results(g, False, tuning.ref_keep), clip.width, clip.height)
    return finish(core, full_output(g, merged), out_fmt)


def check_args(clip: vs.VideoNode, mode: str, transfer: str, threshold: float, fp16_output: bool,
               tuning: Tuning) -> None:
    """ITM's arguments checked before anything loads: a clear ValueError (vs.Error for the clip) naming
    the argument and what it takes."""
    validate_clip(clip, "ITM")
    if mode not in MODES:
        raise ValueError(f"vsvitm.ITM: mode must be one of {MODES}, got {mode!r}")
    check_transfer(transfer)
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"vsvitm.ITM: threshold must be in (0, 1) (0.95 is the paper's), got {threshold}")
    if not isinstance(fp16_output, bool):
        raise ValueError(f"vsvitm.ITM: fp16_output must be True or False, got {fp16_output!r}")
    tuning.check()


def graph(core, clip: vs.VideoNode, rgb: vs.VideoNode, eng: Engine, sched: Schedule,
          scene_threshold: float) -> Graph:
    """The pieces every mode's stages share (stages.common.Graph)."""
    blank = core.std.BlankClip(rgb, format=vs.RGBS, keep=True)
    # ICAM's references only feed the network (trained on 8-bit LDR). VapourSynth fetches a key
    # frame's references (2 * num_refs, 8 by default) as soon as the key is requested and holds
    # them until its ICAM has run, for every key a chunk waits on (~9): from an 8-bit source they
    # are held as RGB24, 6 MB a frame at 1920x1080 instead of 12 (a render's peak: BENCHMARKS.md).
    fmt = clip.format
    ref_rgb, ref_id = rgb, (lambda r: r)
    if fmt.sample_type == vs.INTEGER and fmt.bits_per_sample <= 8:
        ref_rgb = to_display_rgb(clip, format=vs.RGB24)
        # the engine caches each frame's reduced luma and pre-flows by id: an 8-bit reference is not
        # the same pixels as that frame in `rgb`, and sharing an entry would make results depend on
        # which form was requested first
        ref_id = lambda r: (r, "rgb24")  # noqa: E731
    # key results (Y, linear, <= Y_MAX) as half floats, like the chunks' results: 2^-11 relative
    return Graph(core, eng, sched, rgb, Shifter(rgb), Shifter(ref_rgb), ref_id, blank,
                 tmpl=core.std.CopyFrameProps(blank, rgb), ykey=core.std.BlankClip(rgb, format=vs.RGBH, keep=True),
                 window=cut_window(core, rgb, scene_threshold, sched.reach))


def linear_output(core, rgb: vs.VideoNode, transfer: str) -> vs.VideoNode:
    """Mode "linear": f^-1(L) of every frame, with the source frame's props."""
    tmpl = core.std.CopyFrameProps(core.std.BlankClip(rgb, format=vs.RGBS, keep=True), rgb)

    def lin(n, f):
        out = f[0].copy()
        array_to_frame(to_linear(frame_to_code(f[1]), transfer), out)
        return out
    return core.std.ModifyFrame(tmpl, [tmpl, rgb], lin)


def finish(core, out: vs.VideoNode, out_fmt: int) -> vs.VideoNode:
    """The output's linear-light props, and RGBH when asked for."""
    out = set_linear_props(out)
    return core.resize.Point(out, format=out_fmt) if out_fmt != vs.RGBS else out
