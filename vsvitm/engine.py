"""The numeric core of the plugin: runs the ICAM and FCPM ONNX graphs on numpy frames.

Frames arrive here as HxWx3 float32 display-referred code values (from VapourSynth); everything is
padded to the networks' modulus once and cropped back at the end. Pre-flows and key-frame results
are cached (bounded in bytes) and shared between VapourSynth's threads.
"""
from __future__ import annotations

import json
import os
import sys
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from . import backends
from .cache import ByteLRU
from .curves import overexposure_mask, to_linear
from .flow import RUNTIME_PRESET, DISFlow, HomographyDIS, align_small, luma, pool2, up2_plane, warp_np, warp_planes
from .prep import MAX_REL, fill_padded, merge_prep_graph, net_input, pad_to, padded_size, ratio_scale

MODEL_DIR = Path(__file__).resolve().parent / "models"
MODEL_FORMAT = 1
ICAM_GRAPHS = ("icam_init", "icam_ref", "icam_decode")
FCPM_GRAPHS = ("fcpm_merge", "fcpm_back", "fcpm_fwd", "fcpm_fuse")
GRAPH_INPUTS = {"icam_init": ("key",), "icam_ref": ("fl", "g", "ref", "preflow"), "icam_decode": ("key", "fl", "g"),
                "fcpm_merge": ("cur", "keys", "ys", "preflows", "valid"), "fcpm_back": ("x", "cur", "xn", "h", "flow"),
                "fcpm_fwd": ("x", "cur", "xn", "h", "flow"), "fcpm_fuse": ("hf", "hb", "x", "cur")}
# CPU forms of the recurrent steps, fed the state already warped (flow.warp_planes, OpenCV: at 512x512
# a 16-channel warp took ~70 ms inside the graph with ONNX Runtime's GridSample, ~12 ms this way).
# Used on the CPU provider when the model folder has them.
PREWARP_GRAPHS = {"fcpm_back": "fcpm_back_cpu", "fcpm_fwd": "fcpm_fwd_cpu"}
GRAPH_INPUTS.update({g: ("x", "cur", "xn", "hw") for g in PREWARP_GRAPHS.values()})
# Likewise the merge in parts around its warps, warped between by OpenCV (the merge's GridSamples were
# ~55 % of its time): each key's flow correction (fcpm_merge_correct, its pooling, warp and upsampling
# done by OpenCV too), then masks and mix (fcpm_merge_mix). Used with the step graphs when present.
# Folders of an older export have fcpm_merge_flows instead of fcpm_merge_correct: they merge in
# one graph (same result, slower).
MERGE_CORRECT = "fcpm_merge_correct"
SPLIT_MERGE = ("fcpm_merge_mix",)
GRAPH_INPUTS.update({MERGE_CORRECT: ("x",), "fcpm_merge_mix": ("cur", "wys", "wkeys", "valid")})
# And ICAM's reference step in four graphs around its feature warps (training/icam_net.ICAM.ref_a..d),
# warped between by OpenCV: in one graph those warps (gathers of 24-channel maps at 1/2 res, a
# full-res GridSample) were about a quarter of the step's time.
SPLIT_REF = ("icam_ref_a", "icam_ref_b", "icam_ref_c", "icam_ref_d")
GRAPH_INPUTS.update({"icam_ref_a": ("ref", "preflow"), "icam_ref_b": ("fl", "rl", "w0", "pf"),
                     "icam_ref_c": ("fl", "w1", "flow"),
                     "icam_ref_d": ("fl", "g", "rl", "samples", "mod", "flow", "wr")})
LOG_EPS = 1e-3  # X^ and the merge's warped key results are log(Y + LOG_EPS) (training/nets_common.EPS)
# The CPU graphs are used up to this frame size. At 1920x1080 the OpenCV state warps raised a render's
# peak RSS (scripts/memory_trace.py: 4066-4101 MiB against 3982-3991 with the in-graph warps, mostly
# glibc heap not given back), so large frames keep the in-graph warps and their memory.
# With the heap trimmed after each stage, all CPU forms at 1080p make a frame 17 % faster
# but peak at 4218 MiB with two key frames' ICAM at once, against 3810: over the 4 GB target.
CPU_WARPS_MAX_PIXELS = 1 << 20
# inputs a graph may have: the merge of an FCPM exported with its evidence gate (fcpm_net.FCPMConfig)
OPTIONAL_INPUTS = {"fcpm_merge": ("evidence",), "fcpm_merge_mix": ("wev",)}
Y_MAX = 65504.0  # largest finite half: an RGBH output must never overflow to Inf
# FCPM's recurrent steps and fuse are convolutions plus, in a step, one warp of the state: each output
# row depends only on input rows within a few pixels (and, through the warp, the flow's vertical
# reach). Above BAND_PIXELS (0.26 MP) they run in horizontal bands with that halo, so their activations
# (~370 B/px a step, ~400 B/px the fuse, two steps in flight) exist for one band at a time: at
# 1920x1080 these were the peak of a render. The result is the same (tests/test_itm.py).
BAND_PIXELS = 1 << 18
# Merges of frames above this many pixels run one at a time: at 1920x1080 one call holds ~1.3 GB
# (its 54-channel input and the graph's own activations) and two at once made a render's peak
MERGE_ALONE_PIXELS = 1 << 20
# On CUDA the graph's activations live on the GPU and a 1080p merge holds ~0.45 GB of host memory (its
# inputs), while building those inputs is ~0.4 s of one core: one merge at a time bounded a 1080p render
# to ~1 fps on an H200 (BENCHMARKS.md). This many run at once there (VSVITM_CUDA_MERGES overrides).
CUDA_MERGES_AT_ONCE = 4
# On CUDA the last this many key frames' merge inputs stay on the device (Engine._key_on_device): a frame
# merges its 5 nearest keys, and consecutive frames share them, so a chunk of 24 frames (with margins)
# reads about 9 keys
DEVICE_KEYS = 16
# Host threads that make a chunk's device inputs ahead of its recurrence on CUDA (Engine._propagate_bound)
PREP_THREADS = 4
# From this many pixels on, freed heap memory goes back to the system (glibc malloc_trim) after each
# key frame's ICAM and each merge, as after every chunk's recurrence: at 1920x1080 the heap kept
# what one stage freed while the next allocated elsewhere (a render's peak RSS: 4872 MiB without,
# 3810 and 4351 with; scripts/memory_trace.py, BENCHMARKS.md). Not below: the pages freed
# are faulted in again by the next graph run (trimming after every run cost 19 % at 512x512).
TRIM_PIXELS = 1 << 20
BAND_HALO = {"fcpm_back": 3, "fcpm_fwd": 3, "fcpm_fuse": 2,  # stacked 3x3 convolutions after the warp
             "fcpm_back_cpu": 3, "fcpm_fwd_cpu": 3}


def _manifest(folder: Path, name: str, graphs: tuple[str, ...], fp16: bool) -> tuple[dict, dict[str, Path]]:
    meta_path = folder / f"{name}.json"
    if not meta_path.exists():
        raise FileNotFoundError(
            f"vsvitm: no trained {name.upper()} model in {folder} (missing {meta_path.name}). "
            f"Reinstall vsvitm, or train and export one: python scripts/train_{name}.py && python scripts/export_models.py")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"vsvitm: {meta_path} is unreadable ({e}); reinstall vsvitm or re-export the models") from e
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        fmt = meta.get("format") if isinstance(meta, dict) else None
        raise ValueError(f"vsvitm: {meta_path} is model format {fmt!r}, this vsvitm needs "
                         f"{MODEL_FORMAT}; re-export with scripts/export_models.py from this version")
    bad = [k for k in ("modulus", "keys", "hidden")[: 3 if name == "fcpm" else 1]
           if not (isinstance(meta.get(k), int) and not isinstance(meta.get(k), bool) and meta[k] >= 1)]
    if bad:
        raise ValueError(f"vsvitm: {meta_path} lacks a positive integer {', '.join(bad)}; it is damaged: "
                         f"reinstall vsvitm or re-export with scripts/export_models.py")
    paths = {}
    for g in graphs:
        p = folder / f"{g}{'_fp16' if fp16 else ''}.onnx"
        if not p.exists():
            raise FileNotFoundError(f"vsvitm: model file {p} is missing; reinstall vsvitm or re-export the models"
                                    + (" (or use fp16=False)" if fp16 else ""))
        paths[g] = p
    return meta, paths


# metadata key of an int8 graph (scripts/quantize_models.py): the SHA-256 of the fp32 graph it was made from
INT8_SOURCE_KEY = "vsvitm_fp32_sha256"


def file_sha256(path: Path) -> str:
    import hashlib
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _check_int8(sess, int8_path: Path, fp32_path: Path) -> None:
    """An int8 graph made from another fp32 graph (the models were re-exported since) would run other
    weights: refuse it."""
    made_from = sess.get_modelmeta().custom_metadata_map.get(INT8_SOURCE_KEY)
    if made_from != file_sha256(fp32_path):
        raise ValueError(f"vsvitm: {int8_path} was not made from this {fp32_path.name} (re-exported since?); "
                         f"make it again with scripts/quantize_models.py --models {int8_path.parent}, "
                         "or use Backend.ORT_CPU(int8=False)")


def _mallopt_once(param: int, glibc_env: str, own_env: str, default: int) -> int:
    """glibc's mallopt(param, value) once per process; returns the value set, or 0 where nothing was
    done: off glibc, when the user set glibc's own variable `glibc_env` (glibc read it at start), or
    with `own_env`=0; another value of `own_env` is the value."""
    if param in _mallopt_done:
        return _mallopt_done[param]
    _mallopt_done[param] = 0
    want = os.environ.get(own_env, "")
    if glibc_env in os.environ or want == "0" or not sys.platform.startswith("linux"):
        return 0
    try:
        value = int(want) if want else default
        import ctypes
        if value > 0 and ctypes.CDLL("libc.so.6").mallopt(param, value) == 1:
            _mallopt_done[param] = value
    except (OSError, AttributeError, ValueError):
        pass
    return _mallopt_done[param]


_mallopt_done: dict[int, int] = {}


def limit_malloc_arenas() -> int:
    """Cap glibc's malloc arenas at the number of cores (at least 2), once per process; returns the
    cap, or 0 where nothing was done. Why: glibc makes up to 8 arenas per core, one per thread that
    meets a locked one, and keeps each arena's freed memory. A 1920x1080 render holds GB-sized
    transients on several threads: its steady-state peak was 9.4-10.3 GiB with the default and
    8.5-9.0 GiB with the cap, at no measured speed cost (BENCHMARKS.md). Not done when the user set
    MALLOC_ARENA_MAX (glibc read it at start), or with VSVITM_MALLOC_ARENA_MAX=0; another value
    of VSVITM_MALLOC_ARENA_MAX is the cap."""
    return _mallopt_once(-8, "MALLOC_ARENA_MAX", "VSVITM_MALLOC_ARENA_MAX", max(2, os.cpu_count() or 2))  # M_ARENA_MAX


# From TRIM_PIXELS on, on the CPU, heap blocks from this size on are mmapped (glibc M_MMAP_THRESHOLD):
# each goes back to the system when freed instead of staying in the heap. At 1920x1080 the heap kept
# 1.3-1.5 GB that one stage had freed while the next allocated elsewhere: a render's peak RSS was
# 4357/4513 MiB, and 3565 MiB with this (scripts/memory_trace.py, BENCHMARKS.md). Not below
# 1 MP (at 512x512 it cost 27 %: every block faulted in again on each graph run), nor on CUDA (where
# speed is the aim and the networks' activations live on the GPU).
MMAP_THRESHOLD = 1 << 20


def mmap_large_blocks() -> int:
    """Set glibc's mmap threshold to MMAP_THRESHOLD, once per process (it is global to the process and
    never undone: a later small render in the same process keeps it). Returns the threshold set, or 0
    where nothing was done: off glibc, when the user set MALLOC_MMAP_THRESHOLD_ (glibc read it at start),
    or with VSVITM_MMAP_THRESHOLD=0; another value of VSVITM_MMAP_THRESHOLD (bytes) is the threshold."""
    return _mallopt_once(-3, "MALLOC_MMAP_THRESHOLD_", "VSVITM_MMAP_THRESHOLD", MMAP_THRESHOLD)  # M_MMAP_THRESHOLD


def _trim_heap() -> None:
    """Give freed heap memory back to the OS (glibc). With ORT's arena off, activations are malloc'ed
    per call from several threads' malloc arenas; without this RSS crept up in scripts/soak.py."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            import ctypes
            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim = None


def merges_at_once(bind_device: str | None) -> int:
    """How many merges above MERGE_ALONE_PIXELS may run at once: 1 on the CPU (host memory), and on
    CUDA CUDA_MERGES_AT_ONCE, or the positive integer in VSVITM_CUDA_MERGES."""
    if bind_device != "cuda":
        return 1
    want = os.environ.get("VSVITM_CUDA_MERGES", "")
    if want:
        if not want.isdigit() or int(want) < 1:
            raise ValueError(f"vsvitm: VSVITM_CUDA_MERGES={want!r} must be a positive integer (merges at once on CUDA); "
                             "unset it for the default")
        return int(want)
    return CUDA_MERGES_AT_ONCE


def _given(x):
    """An array, or a function giving it: the engine's callers pass frames lazily so that large
    frames exist as arrays only while a graph needs them."""
    return x() if callable(x) else x


class Engine:
    def __init__(self, models: str | Path | None, backend, *, need_fcpm: bool, transfer: str, threshold: float,
                 exposure_norm: bool, cache_bytes: int, ref_gate: float = 0.0, preflow: str = RUNTIME_PRESET):
        limit_malloc_arenas()
        folder = Path(models) if models is not None else MODEL_DIR
        self.backend = backends.resolve(backend)
        fp16 = bool(getattr(self.backend, "fp16", False))
        self.icam_meta, icam_paths = _manifest(folder, "icam", ICAM_GRAPHS, fp16)
        self.modulus = int(self.icam_meta["modulus"])
        self.fcpm_meta, fcpm_paths = ({}, {})
        if need_fcpm:
            self.fcpm_meta, fcpm_paths = _manifest(folder, "fcpm", FCPM_GRAPHS, fp16)
            self.modulus = max(self.modulus, int(self.fcpm_meta["modulus"]))
            self.fcpm_keys = int(self.fcpm_meta["keys"])
            self.hidden = int(self.fcpm_meta["hidden"])
        # Sessions are created now, so a broken or truncated file fails at ITM() time, not mid-encode.
        self.sess = {g: backends.session(p, self.backend) for g, p in {**icam_paths, **fcpm_paths}.items()}
        int8 = backends.use_int8(self.backend)
        self.int8_graphs: list[str] = []  # graphs run as their int8 variant

        def cpu_graphs(names) -> bool:  # the CPU graphs (fp32), loaded when the folder has all of them
            paths = {g: folder / f"{g}.onnx" for g in names}
            if not all(p.exists() for p in paths.values()):
                return False
            fp32 = paths
            if int8:  # a graph's int8 variant where there is one (why: scripts/quantize_models.py)
                paths = {g: folder / f"{g}_int8.onnx" if (folder / f"{g}_int8.onnx").exists() else p
                         for g, p in paths.items()}
                self.int8_graphs += [g for g, p in paths.items() if p.stem.endswith("_int8")]
            self.sess.update({g: backends.session(p, self.backend) for g, p in paths.items()})
            for g in names:
                if paths[g] != fp32[g]:
                    _check_int8(self.sess[g], paths[g], fp32[g])
            fcpm_paths.update(paths)
            return True
        self.prewarp = (need_fcpm and not fp16 and self.sess["fcpm_back"].get_providers()[0] == "CPUExecutionProvider"
                        and cpu_graphs(PREWARP_GRAPHS.values()))
        # an FCPM trained without the merge's flow correction (an ablation) warps by the pre-flows
        self.merge_corrects = bool(self.fcpm_meta.get("config", {}).get("flow_correction", True))
        self.split_merge = self.prewarp and cpu_graphs(SPLIT_MERGE + ((MERGE_CORRECT,) if self.merge_corrects else ()))
        self.split_ref = (not fp16 and self.sess["icam_ref"].get_providers()[0] == "CPUExecutionProvider"
                          and cpu_graphs(SPLIT_REF))
        for g, sess in self.sess.items():  # a file renamed or mixed up with another graph: say so now
            got = sorted(i.name for i in sess.get_inputs())
            if got not in (sorted(GRAPH_INPUTS[g]), sorted(GRAPH_INPUTS[g] + OPTIONAL_INPUTS.get(g, ()))):
                raise ValueError(f"vsvitm: {({**icam_paths, **fcpm_paths})[g]} is not a {g} graph (inputs {got}, "
                                 f"expected {sorted(GRAPH_INPUTS[g])}); reinstall vsvitm or re-export the models")
        # current ICAM graphs also give each key result's reference evidence; a merge
        # with the evidence gate reads it (zeros from older ICAM graphs: the gate then does nothing)
        self.icam_evidence = len(self.sess["icam_decode"].get_outputs()) > 1
        # On CUDA, ICAM's state stays on the GPU between reference steps (IO binding); None: plain runs
        on_cuda = all(s.get_providers()[0] == "CUDAExecutionProvider" for s in self.sess.values())
        self.bind_device = "cuda" if on_cuda else None
        self.on_cpu = all(s.get_providers()[0] == "CPUExecutionProvider" for s in self.sess.values())
        self.merge_evidence = need_fcpm and "evidence" in {i.name for i in self.sess["fcpm_merge"].get_inputs()}
        if self.split_merge and self.merge_evidence != ("wev" in {i.name for i in self.sess["fcpm_merge_mix"].get_inputs()}):
            raise ValueError(f"vsvitm: {folder} mixes merge graphs with and without the evidence gate; "
                             "re-export the FCPM with scripts/export_models.py")
        self.transfer, self.threshold, self.exposure_norm = transfer, threshold, exposure_norm
        # A reference step runs only when the reference shows at least this fraction of the frame that
        # the key clipped (flow.reference_clue, from the pre-flow's reduced images); 0: every reference
        self.ref_gate = float(ref_gate)
        self.clip_level = float(to_linear(np.float32(threshold), transfer))
        self.flow_fn = DISFlow(preflow)  # the DIS preset by name (flow.PRESETS)
        # ICAM's key -> reference pre-flows: DIS started from a feature homography when the ICAM was trained on
        # those (export_models.py --homography-preflow writes it into icam.json), else the same as FCPM's
        start = self.icam_meta.get("preflow_start", "zero")
        if start not in ("zero", "homography"):
            raise ValueError(f"vsvitm: {folder / 'icam.json'} asks for pre-flows started from {start!r}; this vsvitm "
                             "knows 'zero' and 'homography': update vsvitm or re-export the models")
        self.icam_flow_fn = HomographyDIS(preflow) if start == "homography" else self.flow_fn
        # pre-flows at DIS's working size (<= 0.8 MB a pair): 1/8 of the cache holds the ~150 pairs
        # between two uses of a pair (neighbouring chunks share their margins' neighbour flows)
        self.flows = ByteLRU(cache_bytes // 8)
        # each frame's linear luma at DIS's working size, the pre-flow's input: a frame takes part in many
        # pairs (a key frame in 12, a merged frame in 5), and f^-1 + luma of a 1080p frame cost ~25 ms
        # each time; at most 320 px on a side, so 1/64 of the cache holds hundreds of frames
        self.lumas = ByteLRU(cache_bytes // 64)
        self.results = ByteLRU(cache_bytes - cache_bytes // 8 - cache_bytes // 64)
        # Bands bound the host's memory on the CPU. On CUDA they would make every band height (which
        # follows the flow's reach) a new input shape, and each new shape a new cuDNN algorithm search
        # (EXHAUSTIVE by default): a 1080p render on an H200 did not get past its warm-up in 110 s.
        # A GPU holds a 1080p step whole (~0.8 GB of activations).
        self.band_pixels = BAND_PIXELS if self.bind_device is None else 1 << 62
        self.merge_slots = threading.BoundedSemaphore(merges_at_once(self.bind_device))
        self.dev_keys: OrderedDict = OrderedDict()  # _key_on_device: key results on the device (CUDA)
        self.dev_keys_lock = threading.Lock()

    # --- helpers ---
    def _run(self, graph: str, feeds: dict) -> list[np.ndarray]:
        return backends.run(self.sess[graph], feeds)

    def _run_banded(self, graph: str, feeds: dict, flow: np.ndarray | None = None, dtype=np.float32) -> np.ndarray:
        """The first output of a convolutional graph (BAND_HALO), computed band by band.

        A band of rows [a, b) is run on rows [a - p, b + p) and cropped: p covers the convolutions'
        reach and, where the graph warps by `flow` (1x2xHxW, pixels), the largest vertical flow in
        those rows, so every sample the band's rows use lies inside the crop (the frame's own edges
        stay edges). One call when the frame is small or the halo would span the frame. Inputs may be
        half floats (held states): each band is made float32 on its own; the result is `dtype`. An input
        may also be a function (lo, hi) -> its rows lo..hi-1 (the CPU path's warped state, made one band
        at a time); the first input must be an array."""
        h, w = next(iter(feeds.values())).shape[-2:]
        n = -(-h * w // self.band_pixels)

        def rows(v, lo, hi):
            return np.ascontiguousarray(v(lo, hi) if callable(v) else v[..., lo:hi, :], np.float32)
        if n <= 1:
            return self._run(graph, {k: rows(v, 0, h) for k, v in feeds.items()})[0].astype(dtype, copy=False)
        halo = BAND_HALO[graph]
        edges = np.linspace(0, h, n + 1).round().astype(int)
        crops = []
        for a, b in zip(edges[:-1], edges[1:]):
            p = halo
            if flow is not None:  # +2: bilinear reads the next row, and rounding
                p += int(np.ceil(np.abs(flow[0, 1, max(0, a - halo): b + halo]).max())) + 2
            crops.append((a, b, max(0, a - p), min(h, b + p)))
        if sum(hi - lo for _, _, lo, hi in crops) >= 2 * h:  # halos as large as the bands: no saving
            crops = [(0, h, 0, h)]
        out = None
        for a, b, lo, hi in crops:
            part = self._run(graph, {k: rows(v, lo, hi) for k, v in feeds.items()})[0]
            if out is None:
                out = np.empty(part.shape[:-2] + (h, w), dtype)
            out[..., a:b, :] = part[..., a - lo: b - lo, :]
            del part
        return out

    def _pad(self, x: np.ndarray) -> np.ndarray:
        return pad_to(x, self.modulus)[0]

    def input(self, code: np.ndarray, ratio: float = 1.0, out: np.ndarray | None = None) -> np.ndarray:
        """1x4xHpxWp network input, padded to the modulus (into `out`, 1x4xHpxWp, when given): written
        in place, no padded copy of it (1080p: 33 MB and ~4 ms a call, ~10 calls per output frame)."""
        h, w = code.shape[:2]
        if out is None:
            out = np.empty((1, 4) + padded_size(h, w, self.modulus), np.float32)
        net_input(code, self.transfer, ratio, self.threshold, out=out[0, :, :h, :w])
        return fill_padded(out, h, w)

    def _put(self, dst: np.ndarray, planes) -> None:
        """dst (1xCxHpxWp, a slice of a graph input) <- C HxW planes, edge-padded."""
        h, w = planes[0].shape
        for c, p in enumerate(planes):
            dst[0, c, :h, :w] = p
        fill_padded(dst, h, w)

    def preflow(self, a: int, code_a, b: int, code_b) -> tuple[np.ndarray, np.float32]:
        """Cached (flow a->b, exposure ratio b->a) between frames a and b (frame numbers are the key).

        code_a/code_b: HxWx3 code values, or functions giving them (only called on a cache miss)."""
        return self._preflow(a, code_a, b, code_b)[:2]

    def _preflow(self, a: int, code_a, b: int, code_b, full_res: bool = True,
                 icam: bool = False) -> tuple[np.ndarray | None, np.float32, float]:
        """preflow() and, third, flow.reference_clue of b for key a (from the same reduced images).
        The cache holds the flow at DIS's working size, upsampled on each use (~5 ms at 1080p): a
        full-resolution 1080p flow is 16.6 MB, so the cache held only ~14 of them and a chunk's pairs
        were made again. full_res=False: no flow (None), for callers that need only the clue.
        icam: an ICAM key -> reference pair (made by icam_flow_fn)."""
        flow_fn = self.icam_flow_fn if icam else self.flow_fn
        key = self.flow_key(a, b, icam)
        hit = self.flows.get(key)
        if hit is None:
            (sa, pa, full), (sb, pb, _) = self._luma(a, code_a), self._luma(b, code_b)
            if self.ref_gate > 0:
                small = align_small(sa, sb, flow_fn, self.exposure_norm, peaks=(pa, pb, self.clip_level))
            else:  # nothing reads the clue
                small = align_small(sa, sb, flow_fn, self.exposure_norm) + (1.0,)
            hit = small + (full,)
            self.flows.put(key, hit)
        flow, e, clue, full = hit
        return (self.flow_fn.upsample(flow, *full) if full_res else None), e, clue

    def pair(self, a: int, code_a, b: int, code_b) -> tuple[np.ndarray, np.float32]:
        """Cached (flow a->b at full resolution, exposure ratio b->a) made as ICAM's key -> reference
        pre-flows are (started from a feature homography when icam.json asks for it): the temporal
        mode's key frame -> reference alignment, shared with ICAM's cache entries. code_a/code_b: HxWx3
        code values or functions giving them."""
        return self._preflow(a, code_a, b, code_b, icam=True)[:2]

    def flow_key(self, a, b, icam: bool = False) -> tuple:
        """The pre-flow cache's key for the pair a -> b (an ICAM pair made by its own flow gets its own entry)."""
        if icam and self.icam_flow_fn is not self.flow_fn:
            return (a, b, self.exposure_norm, "homography")
        return (a, b, self.exposure_norm)

    def _luma(self, n: int, code) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
        """(linear luma and, with a ref_gate, linear max channel of frame n at DIS's working size (else
        None), the frame's (h, w)), cached; code: its HxWx3 code values or a function giving them
        (called on a miss only)."""
        hit = self.lumas.get(n)
        if hit is None:
            c = _given(code)
            lin = to_linear(c, self.transfer)
            peak = None
            if self.ref_gate > 0:
                peak = self.flow_fn.reduce(np.maximum(np.maximum(lin[..., 0], lin[..., 1]), lin[..., 2]))
            hit = (self.flow_fn.reduce(luma(lin)), peak, c.shape[:2])
            self.lumas.put(n, hit)
        return hit

    def useful_refs(self, k: int, code_k, refs: list) -> list:
        """The references of key k that pass the gate (all of them when ref_gate is 0), in order."""
        if self.ref_gate <= 0:
            return list(refs)
        return [(r, c) for r, c in refs
                if self._preflow(k, code_k, r, c, full_res=False, icam=True)[2] >= self.ref_gate]

    def _pad_flow(self, flow: np.ndarray) -> np.ndarray:
        return self._pad(flow.transpose(2, 0, 1))[None]

    # --- stage 1: ICAM ---
    def icam(self, k: int, code_k: np.ndarray, refs: list[tuple[int, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        """Y for key frame k (HxWx3 linear, >= f^-1(L)), references added one by one, nearest first,
        and how much reference evidence backs it per pixel (HxW in [0, 1); zeros from older graphs).

        refs: (frame id, HxWx3 code values or a function giving them), all of them run (the
        caller gates them with useful_refs). The id keys the luma and pre-flow caches: a frame
        number, or any hashable naming those pixels (itm: (r, "rgb24") for 8-bit references)."""
        key = self.input(code_k)
        if self.bind_device:
            dev, did = self.bind_device, getattr(self.backend, "device_id", 0)
            run = lambda graph, feeds: backends.run_bound(self.sess[graph], feeds, dev, did)  # noqa: E731
        else:
            run = self._run
        fl, g = run("icam_init", {"key": key})
        split = self.splits_ref(key)

        def ref_inputs(r, code_r) -> dict:
            code_r = _given(code_r)  # one reference's array at a time
            flow, e = self._preflow(k, code_k, r, code_r, icam=True)[:2]
            return {"ref": self.input(code_r, e), "preflow": self._pad_flow(flow)}
        if self.bind_device:
            # the references' inputs are made ahead by PREP_THREADS workers and sent to the device, so
            # the steps (one after another) wait only for the GPU, as in _propagate_bound
            def on_device(r, code_r) -> dict:
                return {name: backends.to_device(v, dev, did) for name, v in ref_inputs(r, code_r).items()}
            with ThreadPoolExecutor(PREP_THREADS) as pool:
                made = [pool.submit(on_device, r, code_r) for r, code_r in refs]
                for i in range(len(made)):
                    fl, g = run("icam_ref", {"fl": fl, "g": g, **made[i].result()})[:2]
                    made[i] = None  # that reference's inputs leave the device
        else:
            for r, code_r in refs:
                feeds = {"fl": fl, "g": g, **ref_inputs(r, code_r)}
                fl, g = self._ref_split(feeds) if split else run("icam_ref", feeds)[:2]
        out = run("icam_decode", {"key": key, "fl": fl, "g": g})
        if key.shape[-1] * key.shape[-2] >= TRIM_PIXELS:
            _trim_heap()
        if self.bind_device:
            out = [o.numpy() for o in out]
        h, w = code_k.shape[:2]
        ev = (np.clip(np.nan_to_num(out[1][0, 0, :h, :w]), 0.0, 1.0).astype(np.float32) if self.icam_evidence
              else np.zeros((h, w), np.float32))
        return self.finite(out[0][0, :, :h, :w].transpose(1, 2, 0)), ev

    def splits_ref(self, key: np.ndarray) -> bool:
        """Whether the reference steps for this (padded) key input run as icam_ref_a..d (_ref_split)."""
        return self.split_ref and key.shape[-2] * key.shape[-1] <= CPU_WARPS_MAX_PIXELS

    def _ref_split(self, feeds: dict) -> tuple[np.ndarray, np.ndarray]:
        """icam_ref on the CPU as icam_ref_a..d with OpenCV doing the warps between (warp_planes:
        bilinear, coordinates clamped to the frame, as nets_common.warp). Same result as icam_ref."""
        rl, pf = self._run("icam_ref_a", {"ref": feeds["ref"], "preflow": feeds["preflow"]})
        w0 = warp_planes(rl, pf, np.float32)
        flow = self._run("icam_ref_b", {"fl": feeds["fl"], "rl": rl, "w0": w0, "pf": pf})[0]
        del w0, pf
        flows, mod, fup = self._run("icam_ref_c", {"fl": feeds["fl"], "w1": warp_planes(rl, flow, np.float32), "flow": flow})
        c = rl.shape[1]
        samples = np.empty((1, c * mod.shape[1]) + rl.shape[2:], np.float32)
        for i in range(mod.shape[1]):
            samples[:, c * i: c * (i + 1)] = warp_planes(rl, flows[:, 2 * i: 2 * i + 2], np.float32)
        del flows
        wr = warp_planes(feeds["ref"], fup, np.float32)
        return tuple(self._run("icam_ref_d", {"fl": feeds["fl"], "g": feeds["g"], "rl": rl, "samples": samples,
                                              "mod": mod, "flow": flow, "wr": wr}))

    # --- stage 2: FCPM ---
    def merge(self, t: int, code_t: np.ndarray, keys: list) -> np.ndarray:
        """X^_t (log domain, 3xHpxWp padded) from the nearest key frames' results (eq. 9).

        keys: (k, code_k, y_k, ev_k) with HxWx3 arrays (ev_k: HxW evidence, read only by a merge with the
        evidence gate), or functions giving them; each key's arrays exist only while its slice of the
        network input is filled (the input alone is 49 channels, 54 with evidence: 450 MB at 1080p)."""
        cur = self.input(code_t)
        hp, wp = cur.shape[-2:]
        if hp * wp > MERGE_ALONE_PIXELS:
            with self.merge_slots:
                x = self._merge(t, code_t, keys, cur)
        else:
            x = self._merge(t, code_t, keys, cur)
        if hp * wp >= TRIM_PIXELS:
            _trim_heap()
        return x

    def _merge(self, t: int, code_t: np.ndarray, keys: list, cur: np.ndarray) -> np.ndarray:
        if self.bind_device:
            return self._merge_bound(t, code_t, keys, cur)
        kn = self.fcpm_keys
        hp, wp = cur.shape[-2:]
        ins = np.empty((1, 4 * kn, hp, wp), np.float32)
        ys = np.empty((1, 3 * kn, hp, wp), np.float32)
        flows = np.empty((1, 2 * kn, hp, wp), np.float32)
        valid = np.zeros((1, kn, 1, 1), np.float32)
        evidence = np.empty((1, kn, hp, wp), np.float32) if self.merge_evidence else None
        for j in range(kn):
            k, code_k, y_k, ev_k = keys[min(j, len(keys) - 1)]
            if evidence is not None:
                self._put(evidence[:, j: j + 1], [_given(ev_k)])
            code_k, y_k = _given(code_k), _given(y_k)
            valid[0, j] = 1.0 if j < len(keys) else 0.0
            flow, e = self._to_key(t, code_t, k, code_k)
            self.input(code_k, e, out=ins[:, 4 * j: 4 * j + 4])
            self._put(ys[:, 3 * j: 3 * j + 3], [np.minimum(y_k[..., c] * e, Y_MAX) for c in range(3)])
            self._put(flows[:, 2 * j: 2 * j + 2], [flow[..., 0], flow[..., 1]])
            del code_k, y_k
        if self.split_merge and hp * wp <= CPU_WARPS_MAX_PIXELS:
            held = [ins, ys, flows, evidence]
            del ins, ys, flows, evidence  # _merge_split frees each once used (1080p: 80-170 MB apiece)
            return self._merge_split(cur, valid, held)
        feeds = {"cur": cur, "keys": ins, "ys": ys, "preflows": flows, "valid": valid}
        if evidence is not None:
            feeds["evidence"] = evidence
        return self._run("fcpm_merge", feeds)[0]

    def _to_key(self, t: int, code_t: np.ndarray, k: int, code_k) -> tuple[np.ndarray, np.float32]:
        """The merge's (pre-flow t -> k, exposure ratio) for key k: zero flow and ratio 1 for t's own key."""
        if k == t:
            return np.zeros(code_t.shape[:2] + (2,), np.float32), np.float32(1.0)
        return self.preflow(t, code_t, k, code_k)

    def _merge_bound(self, t: int, code_t: np.ndarray, keys: list, cur: np.ndarray) -> np.ndarray:
        """_merge with IO binding (CUDA): each key's network input (at ratio 1), result and evidence go to
        the device once (_key_on_device) and a small graph (prep.merge_prep_graph) brings them to frame
        t's exposure there; only t's input and the pre-flows are sent per merge (at 1080p ~100 MB
        instead of ~450, and no per-key input making on the host). Same result as _merge."""
        kn = self.fcpm_keys
        dev, did = self.bind_device, getattr(self.backend, "device_id", 0)
        hp, wp = cur.shape[-2:]
        flows = np.empty((1, 2 * kn, hp, wp), np.float32)
        valid = np.zeros((1, kn, 1, 1), np.float32)
        feeds = {}
        for j in range(kn):
            k, code_k, y_k, ev_k = keys[min(j, len(keys) - 1)]
            valid[0, j] = 1.0 if j < len(keys) else 0.0
            flow, e = self._to_key(t, code_t, k, code_k)
            feeds[f"k{j}"], feeds[f"y{j}"], ev = self._key_on_device(k, code_k, y_k, ev_k, (hp, wp))
            if self.merge_evidence:
                feeds[f"ev{j}"] = ev
            feeds[f"s{j}"], feeds[f"e{j}"] = np.array([ratio_scale(e)], np.float32), np.array([e], np.float32)
            self._put(flows[:, 2 * j: 2 * j + 2], [flow[..., 0], flow[..., 1]])
        prep = backends.aux_session(f"merge_prep_{kn}_{int(self.merge_evidence)}",
                                    lambda: backends.model_bytes(merge_prep_graph(kn, self.merge_evidence, Y_MAX)),
                                    self.backend)
        made = backends.run_bound(prep, feeds, dev, did)
        del feeds
        mfeeds = {"cur": cur, "keys": made[0], "ys": made[1], "preflows": flows, "valid": valid}
        if self.merge_evidence:
            mfeeds["evidence"] = made[2]
        return backends.run_bound(self.sess["fcpm_merge"], mfeeds, dev, did)[0].numpy()

    def _key_on_device(self, k, code_k, y_k, ev_k, padded: tuple[int, int]) -> tuple:
        """Key k's network input at ratio 1 (1x4xHpxWp), its Y (1x3xHpxWp, float32) and its evidence
        (1x1xHpxWp, or None without the evidence gate) as OrtValues on the device, made once and kept
        for the next merges (the last DEVICE_KEYS keys; ~70 MB each at 1080p)."""
        with self.dev_keys_lock:
            hit = self.dev_keys.get((k, padded))
            if hit is not None:
                self.dev_keys.move_to_end((k, padded))
                return hit
        dev, did = self.bind_device, getattr(self.backend, "device_id", 0)
        hp, wp = padded
        y_k = _given(y_k)
        ys = np.empty((1, 3, hp, wp), np.float32)
        self._put(ys, [y_k[..., c] for c in range(3)])
        del y_k
        ev = None
        if self.merge_evidence:
            ev = np.empty((1, 1, hp, wp), np.float32)
            self._put(ev, [_given(ev_k)])
            ev = backends.to_device(ev, dev, did)
        hit = (backends.to_device(self.input(_given(code_k)), dev, did), backends.to_device(ys, dev, did), ev)
        with self.dev_keys_lock:
            self.dev_keys[(k, padded)] = hit
            while len(self.dev_keys) > DEVICE_KEYS:
                self.dev_keys.popitem(last=False)
        return hit

    def _merge_split(self, cur, valid, held: list) -> np.ndarray:
        """The merge on the CPU: corrected flows (graph), each key's result (log domain), frame and
        evidence warped by OpenCV in one call per key, masks and mix (graph). Same result as fcpm_merge.
        held: [ins, ys, flows, evidence], emptied here so that each array is freed once used."""
        ins, ys, flows, evidence = held
        held.clear()
        kn = self.fcpm_keys
        hp, wp = cur.shape[-2:]
        # slots past the frame's keys repeat its last key (valid 0): the same inputs, so the same
        # corrected flow and warps, made once and copied
        n = max(1, int(valid.sum()))
        fl = self._merge_flows_cv(cur, ins, flows, n) if self.merge_corrects else flows
        del flows
        wys = np.empty((1, 3 * kn, hp, wp), np.float32)
        wkeys = np.empty((1, 3 * kn, hp, wp), np.float32)
        wev = np.empty((1, kn, hp, wp), np.float32) if evidence is not None else None
        for j in range(kn):
            if j >= n:
                wys[:, 3 * j: 3 * j + 3], wkeys[:, 3 * j: 3 * j + 3] = wys[:, 3 * n - 3: 3 * n], wkeys[:, 3 * n - 3: 3 * n]
                if wev is not None:
                    wev[:, j] = wev[:, n - 1]
                continue
            planes = [np.log(np.maximum(ys[:, 3 * j: 3 * j + 3], 0.0) + np.float32(LOG_EPS)), ins[:, 4 * j: 4 * j + 3]]
            if wev is not None:
                planes.append(evidence[:, j: j + 1])
            w = warp_planes(np.concatenate(planes, 1), fl[:, 2 * j: 2 * j + 2], np.float32)
            wys[:, 3 * j: 3 * j + 3], wkeys[:, 3 * j: 3 * j + 3] = w[:, :3], w[:, 3:6]
            if wev is not None:
                wev[:, j] = w[:, 6]
            del planes, w
        del ins, ys, fl, evidence
        feeds = {"cur": cur, "wys": wys, "wkeys": wkeys, "valid": valid}
        if wev is not None:
            feeds["wev"] = wev
        return self._run("fcpm_merge_mix", feeds)[0]

    def _merge_flows_cv(self, cur: np.ndarray, ins: np.ndarray, flows: np.ndarray, n: int) -> np.ndarray:
        """Each key's pre-flow to frame t plus the learned correction (fcpm_net.FCPM._corrected) for the
        first n key slots (the others are not read): 1/2-res frame and key (2x2 means), the key
        warped by the 1/2-res pre-flow, the correction graph for all keys in one call, its output
        upsampled 2x and added. Pooling, warp and upsampling by OpenCV (flow.pool2, warp_planes,
        up2_plane): the same values as the older graph fcpm_merge_flows, in ~half the time.
        Written into `flows` (1x2KxHpxWp), which is returned."""
        h2, w2 = cur.shape[-2] // 2, cur.shape[-1] // 2
        x = np.empty((n, 8, h2, w2), np.float32)
        x[:, :4] = pool2(cur)[0]
        for j in range(n):
            f2 = pool2(flows[:, 2 * j: 2 * j + 2])
            f2 *= np.float32(0.5)  # in 1/2-res pixels (nets_common.downflow)
            x[j, 4:] = warp_planes(pool2(ins[:, 4 * j: 4 * j + 4]), f2, np.float32)[0]
        d = self._run(MERGE_CORRECT, {"x": x})[0]
        for j in range(n):
            for c in range(2):
                flows[0, 2 * j + c] += np.float32(2.0) * up2_plane(d[j, c])
        return flows

    def propagate(self, ts: list[int], code, xhat, core: range) -> dict[int, np.ndarray]:
        """Bidirectional recurrent refinement (eq. 10-12) over a chunk; returns Y (HxWx3, half floats)
        for core frames.

        ts: the frame numbers of the chunk's run, in order; code(i) gives frame ts[i] as HxWx3 code
        values and xhat(i) its merged X^ (1x3xHpxWp, log domain, half floats). Both are called when
        needed and not kept: at 1920x1080 a 24-frame run held as arrays is 0.9 GB.
        """
        n = len(ts)
        if self.bind_device:
            return self._propagate_bound(ts, code, xhat, core)

        def step(graph: str, i: int, j: int | None, h):
            x, c = xhat(i), code(i)
            hp, wp = x.shape[-2:]
            if j is None:  # the run's end: no neighbour, zero state (made here, not held for the whole run)
                xn, flow, h = x, np.zeros((1, 2, hp, wp), np.float32), np.zeros((1, self.hidden, hp, wp), np.float16)
            else:
                xn, flow = xhat(j), self._pad_flow(self.preflow(ts[i], c, ts[j], lambda: code(j))[0])
            feeds = {"x": x, "cur": self.input(c), "xn": xn}
            if self.prewarp and hp * wp <= CPU_WARPS_MAX_PIXELS:
                # the state warped here (OpenCV), band by band: no full-frame copy of it (67 MB at 1080p);
                # a zero state needs no warp
                feeds["hw"] = h if j is None else lambda lo, hi: warp_planes(h, flow, np.float32, (lo, hi))
                return self._run_banded(PREWARP_GRAPHS[graph], feeds, None, np.float16)
            return self._run_banded(graph, {**feeds, "h": h, "flow": flow}, flow, np.float16)

        # A core frame is fused (eq. 12) by whichever direction reaches it second; the first leaves
        # its state there. The two passes meet in the middle, so about one state per core frame is
        # held at a time, not two. States are half floats, the running ones too (16 channels: 67 MB
        # instead of 134 at 1080p; the devset scores are unchanged), so the result does not depend
        # on which thread came first.
        waiting: dict[int, np.ndarray] = {}
        lock = threading.Lock()
        out: dict[int, np.ndarray] = {}

        def arrive(i: int, forward: bool, h: np.ndarray) -> None:
            h16 = np.asarray(h, np.float16)
            with lock:
                other = waiting.pop(i, None)
                if other is None:
                    waiting[i] = h16
                    return
            hf, hb = (h16, other) if forward else (other, h16)
            c = code(i)
            y = self._run_banded("fcpm_fuse", {"hf": hf, "hb": hb, "x": xhat(i), "cur": self.input(c)})
            # held (and cached) as half floats until the chunk's frames are blended: Y <= Y_MAX is a
            # finite half, and 2^-11 relative is far below an output's 10/12-bit PQ step
            out[ts[i]] = self.finite(y[0, :, :c.shape[0], :c.shape[1]].transpose(1, 2, 0)).astype(np.float16)

        def recurrence(graph: str, order: range, prev: int) -> None:
            h = None
            for i in order:
                h = step(graph, i, i + prev if 0 <= i + prev < n else None, h)
                if ts[i] in core:
                    arrive(i, prev < 0, h)

        self._both_ways(n, recurrence)
        _trim_heap()
        return dict(sorted(out.items()))

    @staticmethod
    def _both_ways(n: int, recurrence) -> None:
        """The two directions are independent until the fuse: run them side by side, so a chunk's
        recurrence uses two cores while other VapourSynth threads wait for it."""
        with ThreadPoolExecutor(1) as pool:
            fut = pool.submit(recurrence, "fcpm_back", range(n - 1, -1, -1), +1)
            recurrence("fcpm_fwd", range(n), -1)
            fut.result()

    def _propagate_bound(self, ts: list[int], code, xhat, core: range) -> dict[int, np.ndarray]:
        """propagate() with IO binding (CUDA): each frame's X^ and network input go to the device once
        per chunk, and the recurrent states never leave it. Why: the plain path copied every state
        (16 channels, 133 MB at 1080p) to the host and back at each step, and made each frame's input
        three times (back, forward, fuse; ~40 ms each at 1080p). States are rounded to half floats on
        the device after each step (backends.round_half), as the plain path holds them, so both paths
        give the same result. The fuse order and meeting in the middle are propagate()'s."""
        n = len(ts)
        dev, did = self.bind_device, getattr(self.backend, "device_id", 0)
        lock = threading.Lock()

        def make_frame(i: int) -> tuple:  # (X^, network input) of ts[i] on the device, (h, w)
            c = code(i)
            return (backends.to_device(np.ascontiguousarray(xhat(i), np.float32), dev, did),
                    backends.to_device(self.input(c), dev, did), c.shape[:2])

        def make_flow(i: int, j: int):  # the padded pre-flow ts[i] -> ts[j] on the device
            flow = self.preflow(ts[i], lambda: code(i), ts[j], lambda: code(j))[0]
            return backends.to_device(self._pad_flow(flow), dev, did)

        # What the steps need (frames on the device, pre-flows) is made ahead by PREP_THREADS workers, in
        # the order the two recurrences need it: each step then waits only for the GPU. Why: made inline,
        # a 1080p step spent ~60 ms on the host (f^-1, mask, conversions, DIS, upsampling) per new frame,
        # one step after another, while the GPU's part is ~8 ms.
        pool = ThreadPoolExecutor(PREP_THREADS)
        frames = {}
        flows = {}
        for s_ in range(n):
            b, f = n - 1 - s_, s_
            for i in (b, f):
                if i not in frames:
                    frames[i] = pool.submit(make_frame, i)
            if b + 1 < n:
                flows[(b, b + 1)] = pool.submit(make_flow, b, b + 1)
            if f > 0:
                flows[(f, f - 1)] = pool.submit(make_flow, f, f - 1)

        def frame(i: int) -> tuple:
            return frames[i].result()

        def step(graph: str, i: int, j: int | None, h):
            x, cur, _ = frame(i)
            if j is None:  # the run's end: no neighbour, zero state
                hp, wp = x.shape()[-2:]
                xn, flow, h = x, np.zeros((1, 2, hp, wp), np.float32), np.zeros((1, self.hidden, hp, wp), np.float32)
            else:
                xn, flow = frame(j)[0], flows.pop((i, j)).result()
            h = backends.run_bound(self.sess[graph], {"x": x, "cur": cur, "xn": xn, "h": h, "flow": flow}, dev, did)[0]
            return backends.round_half(h, self.backend)

        waiting: dict[int, object] = {}
        out: dict[int, np.ndarray] = {}

        def recurrence(graph: str, order: range, prev: int) -> None:
            h = None
            for i in order:
                h = step(graph, i, i + prev if 0 <= i + prev < n else None, h)
                if ts[i] not in core:
                    continue
                with lock:
                    other = waiting.pop(i, None)
                    if other is None:
                        waiting[i] = h
                        continue
                hf, hb = (h, other) if prev < 0 else (other, h)
                x, cur, (hh, ww) = frame(i)
                y = backends.run_bound(self.sess["fcpm_fuse"], {"hf": hf, "hb": hb, "x": x, "cur": cur}, dev, did)[0].numpy()
                out[ts[i]] = self.finite(y[0, :, :hh, :ww].transpose(1, 2, 0)).astype(np.float16)

        try:
            self._both_ways(n, recurrence)
        finally:
            pool.shutdown(cancel_futures=True)
        return dict(sorted(out.items()))

    # --- output ---
    @staticmethod
    def finite(y: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """y as float32 in [0, Y_MAX]: NaN and -Inf -> 0, +Inf -> Y_MAX (into `out` when given).
        fmax/fmin return the number where the other operand is NaN: two passes, no nan_to_num copies."""
        out = np.fmax(y, np.float32(0.0), out=out, dtype=np.float32)
        return np.fmin(out, np.float32(Y_MAX), out=out)

    def blend(self, code: np.ndarray, y: np.ndarray | None) -> np.ndarray:
        """Paper eq. 1: (1 - alpha) f^-1(L) + alpha Y; finite and non-negative.
        Computed as lin + alpha (max(Y, lin) - lin), in place (1080p: four full-frame temporaries fewer)."""
        lin = to_linear(code, self.transfer)
        if y is None:
            return lin
        out = np.maximum(y, lin, dtype=np.float32)
        out -= lin
        out *= overexposure_mask(code, self.threshold)
        out += lin
        return self.finite(out, out)


__all__ = ["Engine", "MODEL_DIR", "Y_MAX", "luma", "warp_np", "MAX_REL"]
