"""vsvitm.ITM: the VapourSynth filter graph around the engine.

Stages, each a clip whose frames are produced on demand by VapourSynth:
  rgb     the input as display-referred code values, RGB48 (each source frame converted once; half
          the memory of RGBS: at 1920x1080 VapourSynth holds dozens of these frames in flight);
          ICAM's references from an 8-bit source as RGB24
  tmpl    blank RGBS frames carrying each source frame's props: what output frames are made from
  cuts    per frame: does a new shot start here (source props or a thumbnail detector)
  window  per frame n: the cut positions within n +- reach (a ModifyFrame over shifted `cuts`)
mode "temporal" (the default; _temporal_stages):
  single  per frame t: S_t, single-frame ICAM (half floats)
  keymap  per key frame k: its radiance map and trust (ICAM with references, raised only, and the
          references' measured radiance; vsvitm.temporal)
  out     per frame t: S_t corrected from the key frames before and after t, then eq. 1
mode "full" (the paper's pipeline):
  keyres  per key frame k: ICAM's Y_k (half floats), from k and its references (requested as shifted
          `rgb` clips, or RGB24 ones from an 8-bit source),
          with the reference evidence behind it as a frame property when the merge reads it
  merged  per frame t: X^_t from the nearest key results (FCPM merge; half floats)
  out     per frame t: the chunk's bidirectional refinement, blended with f^-1(L) (eq. 1)
No callback ever calls get_frame: every frame a stage needs is requested through ModifyFrame clips
chosen by FrameEval, so VapourSynth schedules and parallelises all of it without deadlocks.
"""
from __future__ import annotations

import threading

import numpy as np
import vapoursynth as vs

from .colour import set_linear_props, to_display_rgb, validate_clip
from .curves import check_transfer, max_channel
from . import engine
from .engine import Engine
from .flow import RUNTIME_PRESET, preset_id
from .schedule import Schedule
from .vsnp import array_to_frame, frame_to_array, frame_to_code, frame_to_planes

MODES = ("temporal", "full", "icam", "linear")
PROP_KEY = "VSVITM_KeyFrame"
PROP_REFS = "VSVITM_References"
PROP_REFS_USED = "VSVITM_ReferencesUsed"   # the references whose step ran: ref_keep nearest + passed ref_gate (icam mode, key results)
PROP_KEYS = "VSVITM_Keys"
PROP_CUT = "_VSVITM_Cut"
PROP_EVIDENCE = "_VSVITM_Evidence"  # a key result's reference evidence (bytes of HxW half floats)
PROP_TRUST = "_VSVITM_Trust"  # a key frame's radiance map's trust (bytes of HxWx3 half floats; mode "temporal")
PROP_CONFIDENCE = "VSVITM_Confidence"  # mean confidence of the temporal correction over the frame's clipped channels


def as_list(v) -> list:
    """Frame props hold one-element arrays as scalars."""
    return [v] if isinstance(v, (int, float)) else list(v)


class _Shifter:
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


def _scene_cuts(core, rgb: vs.VideoNode, threshold: float) -> vs.VideoNode:
    """Tiny clip: frame i carries PROP_CUT = 1 when a new shot starts at i.

    Source props (_SceneChangePrev on i, _SceneChangeNext on i-1) win when present. Otherwise a
    thumbnail detector: d(i) = mean |a/mean(a) - b/mean(b)| of luma thumbnails of frames i-1 and i
    (normalised so exposure changes, the temporal clues we are after, are not cuts); a cut is a
    d(i) above `threshold` that also stands out from its neighbours d(i-1), d(i+1) (fast pans do not).
    """
    thumb = core.resize.Bilinear(rgb, 64, 36, format=vs.RGBS)
    at = _Shifter(thumb)
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


# ITM(chunk=None, margin=None): the FCPM recurrence runs over chunk + 2 * margin frames to output
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


def ITM(clip: vs.VideoNode, *, key_stride: int | None = None, ref_stride: int = 15, num_refs: int | None = None,
        transfer: str = "gamma2.2", threshold: float = 0.95, mode: str = "temporal", exposure_norm: bool = True,
        fp16_output: bool = False, backend=None, models=None, cache_mb: int = 1024,
        scene_threshold: float = 0.2, chunk: int | None = None, margin: int | None = None,
        fcpm_keys: int | None = None, ref_gate: float = 0.0, ref_keep: int = 0,
        preflow: str = RUNTIME_PRESET, key_network: bool = True, key_fill: bool = True) -> vs.VideoNode:
    """Inverse tone mapping LDR -> HDR with temporal clues.

    Returns RGBS (RGBH with fp16_output=True), linear light, BT.709 primaries, 1.0 = the input's white.

    clip: the LDR input (any constant-format RGB, YUV or GRAY clip; its props say its matrix and range).
    key_stride: frames between key frames (a key frame runs ICAM with its references); None: 12 in
        mode "temporal", 6 in the others (KEY_STRIDE).
    ref_stride: frames between a key frame's references (k +- ref_stride * i).
    num_refs: references each way of a key frame; None: 2 in mode "temporal", 4 in the others
        (NUM_REFS); 0: no references, single-frame everywhere.
    transfer: the camera curve f that made the LDR ("gamma2.2", "srgb", "bt1886"); f^-1 linearises it.
    threshold: code value above which a pixel counts as over-exposed (0.95, the paper's).
    mode: "temporal" (default: single-frame ICAM on every frame, corrected in clipped channels by the
        radiance that key frames and their references measured, where evidence backs it; without
        evidence the result is single-frame ICAM's), "full" (the paper's pipeline: ICAM on key frames,
        FCPM on every frame), "icam" (ICAM with references on every frame; with num_refs=0 the
        single-frame baseline), "linear" (f^-1(L) only, nothing recovered).
    exposure_norm: bring references to the key frame's exposure before alignment and fusion.
    fp16_output: RGBH output instead of RGBS (half the memory, 2^-11 relative precision).
    backend: vsvitm.Backend.ORT_CPU(...) or ORT_CUDA(...); None picks CUDA when it works, else the CPU.
    models: folder of exported ONNX graphs (default: the package's shipped models).
    cache_mb: the engine's cache of pre-flows, key results and single-frame results, in MiB.
    scene_threshold: thumbnail difference above which a frame starts a new shot (no reference or key
        frame crosses a shot boundary); source props _SceneChangePrev/_SceneChangeNext win.
    chunk: mode "full": the FCPM recurrence chunk, run with `margin` extra frames each side
        (defaults: 24 and 3 below 1 MP, 12 and 6 from 1 MP on).
    margin: mode "full": extra frames each side of a chunk.
    fcpm_keys: mode "full": how many of the nearest key-frame results FCPM merges into a frame
        (default: the model's, 5 = the paper's).
    ref_gate: a reference runs only when it shows, unclipped and brighter than the key's clip level
        once brought to the key's exposure, at least this fraction of the frame where the key is
        clipped; 0 runs every reference.
    ref_keep: with a ref_gate, the nearest ref_keep references each way always run.
    preflow: the OpenCV DIS preset of the pre-flows, "medium" (default) or "fast" (the networks'
        training preset; slightly lower quality, a little faster).
    key_network: mode "temporal": key frames run ICAM with their references (raised only over the
        single-frame result, trusted where ICAM's clue path saw the references unclipped); False
        keeps only the measured fill (faster, less recovered).
    key_fill: mode "temporal": key frames also take the radiance their references measured unclipped
        (aligned, exposure-matched, trusted by local agreement) in the channels they clipped.
    """
    validate_clip(clip, "ITM")
    if mode not in MODES:
        raise ValueError(f"vsvitm.ITM: mode must be one of {MODES}, got {mode!r}")
    check_transfer(transfer)
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"vsvitm.ITM: threshold must be in (0, 1) (0.95 is the paper's), got {threshold}")
    if not (isinstance(ref_gate, (int, float)) and 0.0 <= ref_gate < 1.0):
        raise ValueError(f"vsvitm.ITM: ref_gate must be a fraction of the frame in [0, 1) (0 runs every reference), "
                         f"got {ref_gate!r}")
    if not (isinstance(ref_keep, int) and 0 <= ref_keep):
        raise ValueError(f"vsvitm.ITM: ref_keep must be a whole number of references each way (0 or more), "
                         f"got {ref_keep!r}")
    for name, v in (("key_network", key_network), ("key_fill", key_fill), ("exposure_norm", exposure_norm),
                    ("fp16_output", fp16_output)):
        if not isinstance(v, bool):
            raise ValueError(f"vsvitm.ITM: {name} must be True or False, got {v!r}")
    preset_id(preflow, "vsvitm.ITM")  # before the engine loads its sessions
    if cache_mb < 16:
        raise ValueError(f"vsvitm.ITM: cache_mb must be at least 16, got {cache_mb}")
    core = vs.core
    key_stride = KEY_STRIDE[mode] if key_stride is None else key_stride
    num_refs = NUM_REFS[mode] if num_refs is None else num_refs
    chunk, margin = chunk_and_margin(clip.width, clip.height, chunk, margin)
    sched = Schedule(clip.num_frames, key_stride, ref_stride, num_refs, chunk=chunk, margin=margin)
    rgb = to_display_rgb(clip, format=vs.RGB48)
    out_fmt = vs.RGBH if fp16_output else vs.RGBS
    blank = core.std.BlankClip(rgb, format=vs.RGBS, keep=True)
    tmpl = core.std.CopyFrameProps(blank, rgb)
    # key results (Y, linear, <= Y_MAX) as half floats, like the chunks' results: 2^-11 relative
    ykey = core.std.BlankClip(rgb, format=vs.RGBH, keep=True)

    def finish(out: vs.VideoNode) -> vs.VideoNode:
        out = set_linear_props(out)
        return core.resize.Point(out, format=out_fmt) if out_fmt != vs.RGBS else out

    if mode == "linear":
        from .curves import to_linear

        def lin(n, f):
            out = f[0].copy()
            array_to_frame(to_linear(frame_to_code(f[1]), transfer), out)
            return out
        return finish(core.std.ModifyFrame(tmpl, [tmpl, rgb], lin))

    eng = Engine(models, backend, need_fcpm=(mode == "full"), transfer=transfer, threshold=threshold,
                 exposure_norm=exposure_norm, cache_bytes=cache_mb << 20, ref_gate=ref_gate,
                 preflow=preflow)
    if eng.on_cpu and clip.width * clip.height >= engine.TRIM_PIXELS:
        engine.mmap_large_blocks()  # large blocks back to the system when freed (why: engine.MMAP_THRESHOLD)
    if mode == "full":
        if fcpm_keys is not None and not (isinstance(fcpm_keys, int) and 1 <= fcpm_keys <= eng.fcpm_keys):
            raise ValueError(f"vsvitm.ITM: fcpm_keys must be an integer from 1 to {eng.fcpm_keys} (the model's), "
                             f"got {fcpm_keys!r}")
        sched = Schedule(clip.num_frames, key_stride, ref_stride, num_refs, fcpm_keys=fcpm_keys or eng.fcpm_keys,
                         chunk=chunk, margin=margin)
    reach = sched.reach
    n_frames = clip.num_frames
    rgb_at = _Shifter(rgb)
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
    ref_at = _Shifter(ref_rgb)
    cuts = _scene_cuts(core, rgb, scene_threshold)
    cut_at = _Shifter(cuts)
    tiny = core.std.BlankClip(cuts, keep=True)
    offsets = [d for d in range(-reach, reach + 1) if 0 < abs(d) < n_frames or d == 0]

    def gather_cuts(n: int, f: list[vs.VideoFrame]) -> vs.VideoFrame:
        out = f[0].copy()
        out.props["_VSVITM_Cuts"] = [n + d for d, fr in zip(offsets, f[1:])
                                     if 0 < n + d < n_frames and fr.props[PROP_CUT]] or [-1]
        return out

    window = core.std.ModifyFrame(tiny, [tiny] + [cut_at(d) for d in offsets], gather_cuts)

    def cuts_of(f: vs.VideoFrame) -> list[int]:
        return [c for c in as_list(f.props["_VSVITM_Cuts"]) if c >= 0]

    def from_array(template: vs.VideoNode, arr: np.ndarray, props: dict | None = None) -> vs.VideoNode:
        def make(n, f):
            out = f.copy()
            array_to_frame(arr, out)
            for k, v in (props or {}).items():
                out.props[k] = v
            return out
        return core.std.ModifyFrame(template, template, make)

    # --- stage 1: key frames ---
    # A key result frame holds ICAM's Y; with a merge that reads it, the reference evidence behind Y
    # travels with it as a frame property (half floats, HxW), so one ICAM call serves both.
    def with_result(out: vs.VideoFrame, res: tuple, refs: list[int]) -> vs.VideoFrame:
        array_to_frame(res[0], out)
        out.props[PROP_REFS] = refs or [-1]
        out.props[PROP_REFS_USED] = res[2] or [-1]
        if eng.merge_evidence:
            out.props[PROP_EVIDENCE] = res[1].astype(np.float16).tobytes()
        return out

    def key_node(n: int, f: vs.VideoFrame, every_frame: bool) -> vs.VideoNode:
        c = cuts_of(f)
        if not every_frame and not sched.is_key(n, c):
            return ykey
        refs = sched.references(n, c)
        hit = eng.results.get(("key", n))
        if hit is not None:
            return core.std.ModifyFrame(ykey, ykey, lambda n, f: with_result(f.copy(), hit, refs))

        def compute(n, f):
            frames = f
            code_k = frame_to_code(frames[1])
            given = [(ref_id(r), lambda fr=fr: frame_to_code(fr)) for r, fr in zip(refs, frames[2:])]
            used = gated_refs(eng, n, code_k, refs, given, ref_keep, ref_stride)
            passed = {i for i, _ in used}
            res = eng.icam(n, code_k, used) + ([r for r in refs if ref_id(r) in passed],)
            eng.results.put(("key", n), res)
            return with_result(frames[0].copy(), res, refs)
        return core.std.ModifyFrame(ykey, [ykey, rgb] + [ref_at(r - n) for r in refs], compute)

    if mode == "icam":
        keyres = core.std.FrameEval(ykey, lambda n, f: key_node(n, f, True), prop_src=[window])

        def blend_icam(n, f):
            out = f[0].copy()
            array_to_frame(eng.blend(frame_to_code(f[1]), frame_to_array(f[2])), out)
            out.props[PROP_KEY] = 1
            out.props[PROP_REFS] = f[2].props.get(PROP_REFS, [-1])
            out.props[PROP_REFS_USED] = f[2].props.get(PROP_REFS_USED, [-1])
            return out
        return finish(core.std.ModifyFrame(tmpl, [tmpl, rgb, keyres], blend_icam))

    if mode == "temporal":
        return finish(_temporal_stages(core, eng, sched, window, cuts_of, tmpl, rgb, rgb_at, ref_at, ref_id, ykey,
                                       key_network, key_fill, ref_keep))

    keyres = core.std.FrameEval(ykey, lambda n, f: key_node(n, f, False), prop_src=[window])
    key_at = _Shifter(keyres)

    # --- stage 2a: merge the nearest key results into frame t (a padded RGBH frame holding X^_t) ---
    # X^ is log(Y + EPS) in [-7, 8.3]: half floats keep it to 2^-11 relative (Y within 0.4 % at the
    # top of the range, 0.1 % for Y < 7) and halve what a chunk holds: its 24 merged frames were
    # 600 MB at 1920x1080
    hp, wp = -(-clip.height // eng.modulus) * eng.modulus, -(-clip.width // eng.modulus) * eng.modulus
    xclip = core.std.BlankClip(blank, width=wp, height=hp, format=vs.RGBH, keep=True)

    def merge_node(n: int, f: vs.VideoFrame) -> vs.VideoNode:
        t = n
        keys = sched.nearest_keys(t, cuts_of(f))
        # Neighbouring chunks overlap by their margins: keep X^_t so the second chunk does not merge again.
        mkey = ("merge", t, tuple(keys))
        hit = eng.results.get(mkey)
        if hit is not None:
            return from_array(xclip, hit, {PROP_KEYS: keys})

        def compute(n, f):
            frames = f
            code_t = frame_to_code(frames[1])
            def evidence(fr: vs.VideoFrame) -> np.ndarray | None:
                if not eng.merge_evidence:
                    return None
                return np.frombuffer(fr.props[PROP_EVIDENCE], np.float16).reshape(fr.height, fr.width)
            ks = [(k, lambda j=j: frame_to_code(frames[2 + 2 * j]), lambda j=j: frame_to_array(frames[3 + 2 * j]),
                   lambda j=j: evidence(frames[3 + 2 * j])) for j, k in enumerate(keys)]
            x = np.ascontiguousarray(eng.merge(t, code_t, ks)[0].transpose(1, 2, 0), np.float16)
            eng.results.put(mkey, x)
            out = frames[0].copy()
            array_to_frame(x, out)
            out.props[PROP_KEYS] = keys
            return out
        clips = [xclip, rgb]
        for k in keys:
            clips += [rgb_at(k - t), key_at(k - t)]
        return core.std.ModifyFrame(xclip, clips, compute)

    merged = core.std.FrameEval(xclip, merge_node, prop_src=[window])
    merged_at = _Shifter(merged)

    locks: dict = {}
    locks_guard = threading.Lock()

    def chunk_lock(key) -> threading.Lock:
        with locks_guard:
            if len(locks) > 64:
                locks.clear()
            return locks.setdefault(key, threading.Lock())

    # --- stage 2b: bidirectional refinement over the chunk holding t, then eq. 1 ---
    def out_node(n: int, f: vs.VideoFrame) -> vs.VideoNode:
        t = n
        c = cuts_of(f)
        core_s, core_e, run_s, run_e = sched.chunk_of(t, c)
        hit = eng.results.get(("chunk", core_s, core_e, run_s, run_e))
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
            return core.std.ModifyFrame(tmpl, [tmpl, rgb], done)
        run = list(range(run_s, run_e))

        def compute(n, f):
            template, frames = f[0], f[1:]
            ckey = ("chunk", core_s, core_e, run_s, run_e)
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
        clips = [tmpl] + [rgb_at(tt - t) for tt in run] + [merged_at(tt - t) for tt in run]
        return core.std.ModifyFrame(tmpl, clips, compute)

    return finish(core.std.FrameEval(blank, out_node, prop_src=[window]))


# mode "temporal": a key frame's ICAM-with-references result is trusted min(EVIDENCE_GAIN x evidence, 1)
# in its clipped channels (evidence: ICAM's clue-path confidence, how much references saw there unclipped).
# Chosen on the validation pans among 1, 2 and 4 (BENCHMARKS.md): 2 and 4 scored alike, 1 lower.
EVIDENCE_GAIN = 2.0


def gated_refs(eng: Engine, k: int, code_k: np.ndarray, refs: list[int], given: list, ref_keep: int,
               ref_stride: int) -> list:
    """The references of key frame k that run: the ref_keep nearest each way always, the rest as the
    engine's ref_gate decides (all of them when it is 0).

    eng: the Engine; k: the key frame; code_k: its code values; refs: the reference frame numbers,
    nearest first (so the always-kept ones are a prefix); given: (id, code values) of each of them;
    ref_keep: references each way that always run; ref_stride: frames between references."""
    keep = sum(abs(r - k) <= ref_keep * ref_stride for r in refs)
    return given[:keep] + eng.useful_refs(k, code_k, given[keep:])


def key_weights(t: int, keys: list[int]) -> list[tuple[int, float]]:
    """The key frames that frame t takes its correction from, with weights summing to 1: t itself when it
    is a key; else the nearest key before and after t, each weighted by closeness (1 - distance / gap);
    the one nearest key where t lies beyond the shot's first or last key."""
    if t in keys:
        return [(t, 1.0)]
    before = [k for k in keys if k < t]
    after = [k for k in keys if k > t]
    if before and after:
        a, b = before[-1], after[0]
        return [(a, (b - t) / (b - a)), (b, (t - a) / (b - a))]
    return [((before or after)[-1 if before else 0], 1.0)]


def _temporal_stages(core, eng: Engine, sched: Schedule, window, cuts_of, tmpl, rgb, rgb_at, ref_at, ref_id, ykey,
                     key_network: bool, key_fill: bool, ref_keep: int):
    """mode="temporal": single-frame ICAM on every frame, corrected by the radiance that key frames'
    references and the key frames themselves measured (vsvitm.temporal). Stages:
      single  per frame: S_t, single-frame ICAM (half floats)
      keymap  per key frame k: its radiance map (half floats), filled from its references where they
              measured what k clipped, with its trust as a frame property
      out     per frame: S_t corrected from the key frames before and after t, then eq. 1
    """
    from . import temporal
    from .curves import to_linear
    transfer, thr, clip_level = eng.transfer, eng.threshold, eng.clip_level

    def single_node(n: int) -> vs.VideoNode:
        hit = eng.results.get(("single", n))
        if hit is not None:
            return core.std.ModifyFrame(ykey, ykey, lambda n, f: _with_array(f.copy(), hit))

        def compute(n, f):
            y = eng.results.get(("single", n))
            if y is None:
                y = eng.icam(n, frame_to_code(f[1]), [])[0].astype(np.float16)
                eng.results.put(("single", n), y)
            return _with_array(f[0].copy(), y)
        return core.std.ModifyFrame(ykey, [ykey, rgb], compute)

    single = core.std.FrameEval(ykey, lambda n: single_node(n))

    def key_map(k: int, code_k: np.ndarray, s_k: np.ndarray, refs: list) -> tuple[np.ndarray, np.ndarray]:
        """Key frame k's radiance map and its trust (half floats): S_k, raised to ICAM's result with the
        references where that is higher and the references back it (ICAM's evidence), then filled
        where the references measured what k clipped (vsvitm.temporal)."""
        lin_k = to_linear(code_k, transfer)
        base, ev = s_k, None
        if key_network and refs:
            y_net, ev = eng.icam(k, code_k, refs)
            # only upwards: where ICAM with references comes out below the single-frame result, it is
            # not evidence (on the validation pans, lowering cost 0.4 dB over all pixels on one pan)
            base = np.maximum(y_net, s_k)
        ms, flows = [], []
        for r, code_r in refs:
            flow, e = eng.pair(k, code_k, r, code_r)  # cached: ICAM's own pre-flows
            flows.append(flow)
            if key_fill:
                ms.append(temporal.measure(code_k, lin_k, code_r, to_linear(code_r, transfer), flow, float(e), thr))
        y, conf = temporal.fuse(base, lin_k, code_k, clip_level, thr, ms)
        if ev is not None:
            # evidence only where some reference sees the pixel: near the frame's edge the network's
            # warps replicate the references' borders, which its clue path reads as evidence (streaks)
            trust_net = np.minimum(np.float32(EVIDENCE_GAIN) * ev, 1.0) * temporal.coverage(flows)
            clipped_k = temporal.clipped_weight(code_k, thr)
            conf = np.maximum(conf, temporal.smooth_confidence(trust_net, max_channel(clipped_k))[..., None] * clipped_k)
        rad, trust = temporal.radiance_map(y, lin_k, code_k, conf, thr)
        return rad.astype(np.float16), trust.astype(np.float16)

    def keymap_node(n: int, f: vs.VideoFrame) -> vs.VideoNode:
        c = cuts_of(f)
        if not sched.is_key(n, c):
            return ykey
        refs = sched.references(n, c)
        hit = eng.results.get(("keymap", n))

        def put(out: vs.VideoFrame, res) -> vs.VideoFrame:
            _with_array(out, res[0])
            out.props[PROP_TRUST] = res[1].tobytes()
            out.props[PROP_REFS] = refs or [-1]
            return out
        if hit is not None:
            return core.std.ModifyFrame(ykey, ykey, lambda n, f: put(f.copy(), hit))

        def compute(n, f):
            code_k = frame_to_code(f[1])
            given = [(ref_id(r), frame_to_code(fr)) for r, fr in zip(refs, f[3:])]
            given = gated_refs(eng, n, code_k, refs, given, ref_keep, sched.ref_stride)
            res = key_map(n, code_k, frame_to_array(f[2]).astype(np.float32), given)
            eng.results.put(("keymap", n), res)
            return put(f[0].copy(), res)
        return core.std.ModifyFrame(ykey, [ykey, rgb, single] + [ref_at(r - n) for r in refs], compute)

    keymap = core.std.FrameEval(ykey, keymap_node, prop_src=[window])
    keymap_at = _Shifter(keymap)

    def out_node(n: int, f: vs.VideoFrame) -> vs.VideoNode:
        t, c = n, cuts_of(f)
        start, end = sched.shot(t, c)
        keys = key_weights(t, sched.keys_in(start, end))
        is_key = int(sched.is_key(t, c))
        props = {PROP_KEY: is_key, PROP_KEYS: [k for k, _ in keys],
                 PROP_REFS: (sched.references(t, c) if is_key else []) or [-1]}

        def compute(n, f):
            code_t = frame_to_code(f[1])
            lin_t = to_linear(code_t, transfer)
            s_t = frame_to_array(f[2]).astype(np.float32)
            given = []
            for j, (k, wt) in enumerate(keys):
                km = f[3 + 2 * j]
                trust = np.frombuffer(km.props[PROP_TRUST], np.float16).reshape(km.height, km.width, 3).astype(np.float32)
                rad = frame_to_array(km).astype(np.float32)
                if k == t:
                    given.append((wt, None, 1.0, code_t, rad, trust))
                else:
                    code_k = frame_to_code(f[4 + 2 * j])
                    flow, e = eng.preflow(t, code_t, k, code_k)  # a few frames apart: plain DIS
                    given.append((wt, flow, float(e), code_k, rad, trust))
            ms = temporal.carried(code_t, lin_t, thr, given)
            y, conf = temporal.fuse(s_t, lin_t, code_t, clip_level, thr, ms, w0=None)
            out = f[0].copy()
            array_to_frame(eng.blend(code_t, y), out)
            out.props.update(props)
            s = temporal.clipped_weight(code_t, thr)
            out.props[PROP_CONFIDENCE] = float((conf.sum() / s.sum()) if s.sum() > 0 else 0.0)
            return out
        clips = [tmpl, rgb, single]
        for k, _ in keys:
            clips += [keymap_at(k - t), rgb_at(k - t)]
        return core.std.ModifyFrame(tmpl, clips, compute)

    return core.std.FrameEval(tmpl, out_node, prop_src=[window])


def _with_array(out: vs.VideoFrame, arr: np.ndarray) -> vs.VideoFrame:
    array_to_frame(arr, out)
    return out
