"""Mode "temporal" (the default): single-frame ICAM on every frame, corrected by the radiance that key
frames and their references measured (vsvitm.temporal); and the reference gate every mode's key
frames use (gated_refs)."""
from __future__ import annotations

import atexit
import contextlib
import threading
import weakref

import numpy as np
import vapoursynth as vs

from ..curves import max_channel
from ..engine import Engine
from ..schedule import Schedule
from ..vsnp import array_to_frame, frame_to_array, frame_to_code
from .common import PROP_CONFIDENCE, PROP_KEY, PROP_KEYS, PROP_REFS, PROP_TRUST
from .common import Shifter as _Shifter


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


# From this many pixels a frame on the CPU, the temporal mode runs one ICAM at a time (single-frame or a key
# frame's with references, whichever thread asks): at 1920x1080 each holds about 1 GB while it runs, and
# two or three at once (VapourSynth's threads and the key frame computed ahead) set a render's peak
# (4.1-4.5 GB against 3.1 GB, at the same speed: BENCHMARKS.md).
NETWORK_ALONE_PIXELS = 1 << 20
def keymap_key(k: int, refs: list[int]) -> tuple:
    """The engine cache's key of key frame k's map made from references `refs`."""
    return ("keymap", k, tuple(refs))


_RUNNING: weakref.WeakSet = weakref.WeakSet()   # KeyAhead objects that have started a thread


@atexit.register
def _finish_ahead() -> None:
    """At exit, no key frame is being computed ahead: a VapourSynth request or network run still in
    flight when the core and ONNX Runtime go away aborts the process."""
    for ahead in list(_RUNNING):
        ahead.close()


class KeyAhead:
    """Key frames' maps computed once, and the next one started before any frame needs it.

    A previewer steps one frame at a time; the frame after a key frame needs the next key frame's map,
    whose ICAM with references takes several frames' time. start() computes that key in a background
    thread while the frames before it are shown, so no single step waits for all of it. Results are the
    same whoever computes them: once() is how the filter and that thread both make a key's map, one
    computation per key, the others waiting for it.

    results: the cache the maps go to (the engine's ByteLRU).
    prefetch: prefetch(k, refs) requests key frame k's inputs from VapourSynth (from the background
        thread, never from a filter callback, so no worker waits on it) and makes its map with once();
        it returns early once stopping() is true.
    alone: a lock held while a map is made (shared with the single-frame stage: one ICAM run at a time,
        for memory, from NETWORK_ALONE_PIXELS on the CPU); None: maps of different key frames may overlap.
    """

    def __init__(self, results, prefetch, alone=None):
        self.results, self.prefetch = results, prefetch
        self._alone = contextlib.nullcontext() if alone is None else alone
        self._guard = threading.Lock()
        self._locks: dict = {}
        self._started: set = set()
        self._busy = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def stopping(self) -> bool:
        """Whether close() was called: a prefetch makes no further request."""
        return self._stop.is_set()

    def close(self) -> None:
        """Start nothing more, and wait for the key frame being computed ahead, if any."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join()

    def once(self, key, make):
        """The cached result under `key`, or make()'s, put there; callers asking at the same time wait for it.

        key: the cache key; make: computes the result from arrays (no VapourSynth request, so waiting for
        it cannot deadlock)."""
        with self._guard:
            if len(self._locks) > 64:
                self._locks.clear()
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            hit = self.results.get(key)
            if hit is None:
                with self._alone:
                    hit = make()
                self.results.put(key, hit)
        return hit

    def start(self, k: int, refs: list[int]) -> None:
        """Compute key frame k's map in the background, unless it is cached, was started before, or another
        key is being computed ahead (one at a time: seeking around does not pile up work).

        k: the key frame; refs: its reference frame numbers."""
        key = keymap_key(k, refs)
        with self._guard:
            if self._busy or self._stop.is_set() or key in self._started or self.results.get(key) is not None:
                return
            if len(self._started) > 256:
                self._started.clear()
            self._started.add(key)
            self._busy = True
            _RUNNING.add(self)
            self._thread = threading.Thread(target=self._work, args=(k, refs), daemon=True, name="vsvitm-key-ahead")
            self._thread.start()   # under the guard: close() never joins a thread not yet started

    def _work(self, k: int, refs: list[int]) -> None:
        try:
            self.prefetch(k, refs)
        except Exception:  # noqa: BLE001 - the filter makes this key itself when a frame needs it, and reports
            pass
        finally:
            with self._guard:
                self._busy = False


def _temporal_stages(core, eng: Engine, sched: Schedule, window, cuts_of, tmpl, rgb, rgb_at, ref_at, ref_id, ykey,
                     key_network: bool, key_fill: bool, ref_keep: int):
    """mode="temporal": single-frame ICAM on every frame, corrected by the radiance that key frames'
    references and the key frames themselves measured (vsvitm.temporal). Stages:
      single  per frame: S_t, single-frame ICAM (half floats)
      keymap  per key frame k: its radiance map (half floats), filled from its references where they
              measured what k clipped, with its trust as a frame property
      out     per frame: S_t corrected from the key frames before and after t, then eq. 1
    """
    # what the stages make from the source frames is in the engine's cache; VapourSynth's own cache of the
    # converted frames (12 MB an RGB48 frame at 1920x1080, kept while its cache, by default half the RAM,
    # has room) set the render's peak: 5.5 GB at 1080p with it, 3.3 GB without
    for node in (rgb, ref_at.clip):
        core.std.SetVideoCache(node, 0)
    big = eng.on_cpu and rgb.width * rgb.height >= NETWORK_ALONE_PIXELS
    one = threading.Lock() if big else contextlib.nullcontext()   # held while an ICAM runs
    single = _single_stage(core, eng, rgb, ykey, one)
    keymap, ahead = _keymap_stage(core, eng, sched, window, cuts_of, rgb, ref_at, ref_id, ykey, single,
                                  key_network, key_fill, ref_keep, one)
    return _out_stage(core, eng, sched, window, cuts_of, tmpl, rgb, rgb_at, single, keymap, ahead)


def _single_stage(core, eng: Engine, rgb, ykey, one):
    """single: per frame, S_t, single-frame ICAM (half floats); `one` is held while it runs."""
    def single_node(n: int) -> vs.VideoNode:
        hit = eng.results.get(("single", n))
        if hit is not None:
            return core.std.ModifyFrame(ykey, ykey, lambda n, f: _with_array(f.copy(), hit))

        def compute(n, f):
            y = eng.results.get(("single", n))
            if y is None:
                with one:
                    y = eng.icam(n, frame_to_code(f[1]), [])[0].astype(np.float16)
                eng.results.put(("single", n), y)
            return _with_array(f[0].copy(), y)
        return core.std.ModifyFrame(ykey, [ykey, rgb], compute)

    return core.std.FrameEval(ykey, lambda n: single_node(n))


def _key_map(eng: Engine, k: int, code_k: np.ndarray, s_k: np.ndarray, refs: list, key_network: bool,
             key_fill: bool) -> tuple[np.ndarray, np.ndarray]:
    """Key frame k's radiance map and its trust (half floats): S_k, raised to ICAM's result with the
    references where that is higher and the references back it (ICAM's evidence), then filled
    where the references measured what k clipped (vsvitm.temporal)."""
    from .. import temporal
    from ..curves import to_linear
    transfer, thr, clip_level = eng.transfer, eng.threshold, eng.clip_level
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


def _keymap_stage(core, eng: Engine, sched: Schedule, window, cuts_of, rgb, ref_at, ref_id, ykey, single,
                  key_network: bool, key_fill: bool, ref_keep: int, one):
    """keymap: per key frame k, its radiance map (half floats), filled from its references where they
    measured what k clipped, with its trust as a frame property; and the KeyAhead that makes the maps
    (cached under the key frame and its references)."""
    def make_keymap(k: int, refs: list[int], code_k: np.ndarray, s_k: np.ndarray, codes: list) -> tuple:
        def make():
            given = gated_refs(eng, k, code_k, refs, [(ref_id(r), c) for r, c in zip(refs, codes)], ref_keep,
                               sched.ref_stride)
            return _key_map(eng, k, code_k, s_k, given, key_network, key_fill)
        return ahead.once(keymap_key(k, refs), make)

    def prefetch(k: int, refs: list[int]) -> None:
        frames = []
        for node, n in [(rgb, k), (single, k)] + [(ref_at.clip, r) for r in refs]:
            if ahead.stopping():
                return
            frames.append(node.get_frame(n))
        if not ahead.stopping():
            make_keymap(k, refs, frame_to_code(frames[0]), frame_to_array(frames[1]).astype(np.float32),
                        [frame_to_code(f) for f in frames[2:]])

    ahead = KeyAhead(eng.results, prefetch, alone=one)

    def keymap_node(n: int, f: vs.VideoFrame) -> vs.VideoNode:
        c = cuts_of(f)
        if not sched.is_key(n, c):
            return ykey
        refs = sched.references(n, c)
        hit = eng.results.get(keymap_key(n, refs))

        def put(out: vs.VideoFrame, res) -> vs.VideoFrame:
            _with_array(out, res[0])
            out.props[PROP_TRUST] = res[1].tobytes()
            out.props[PROP_REFS] = refs or [-1]
            return out
        if hit is not None:
            return core.std.ModifyFrame(ykey, ykey, lambda n, f: put(f.copy(), hit))

        def compute(n, f):
            res = make_keymap(n, refs, frame_to_code(f[1]), frame_to_array(f[2]).astype(np.float32),
                              [frame_to_code(fr) for fr in f[3:]])
            return put(f[0].copy(), res)
        return core.std.ModifyFrame(ykey, [ykey, rgb, single] + [ref_at(r - n) for r in refs], compute)

    return core.std.FrameEval(ykey, keymap_node, prop_src=[window]), ahead


def _out_stage(core, eng: Engine, sched: Schedule, window, cuts_of, tmpl, rgb, rgb_at, single, keymap,
               ahead: KeyAhead):
    """out: per frame, S_t corrected from the key frames before and after t, then eq. 1; each frame
    starts the key frame after the ones it needs ahead (KeyAhead)."""
    from .. import temporal
    from ..curves import to_linear
    transfer, thr, clip_level = eng.transfer, eng.threshold, eng.clip_level
    keymap_at = _Shifter(keymap)

    def out_node(n: int, f: vs.VideoFrame) -> vs.VideoNode:
        t, c = n, cuts_of(f)
        start, end = sched.shot(t, c)
        keys = key_weights(t, sched.keys_in(start, end))
        is_key = int(sched.is_key(t, c))
        props = {PROP_KEY: is_key, PROP_KEYS: [k for k, _ in keys],
                 PROP_REFS: (sched.references(t, c) if is_key else []) or [-1]}
        # the key frame after the ones t needs, which the frames after t will need: started now unless t
        # waits for two key frames itself (a cold seek between key frames), else once they are ready
        upcoming = [k for k in sched.keys_in(start, end) if k > max(k for k, _ in keys)]
        missing = sum(eng.results.get(keymap_key(k, sched.references(k, c))) is None for k, _ in keys)
        if upcoming and missing < 2:
            ahead.start(upcoming[0], sched.references(upcoming[0], c))

        def compute(n, f):
            if upcoming:
                ahead.start(upcoming[0], sched.references(upcoming[0], c))
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
