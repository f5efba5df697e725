"""The methods an evaluation compares: vsvitm.ITM keyword arguments by name, rendered to numpy."""
from __future__ import annotations

import json
import time

import numpy as np

DEFAULT_METHODS: list[tuple[str, dict]] = [
    ("f^-1(L)", {"mode": "linear"}),
    ("single frame", {"num_refs": 0, "mode": "icam"}),
    ("ICAM only", {"mode": "icam"}),
    ("default", {}),
    ("full", {"mode": "full"}),
]
LDR_VIDEO_METHODS = ("f^-1(L)", "single frame", "default")
BACKENDS = {"cpu": lambda v: v.Backend.ORT_CPU(), "cpu-fp16": lambda v: v.Backend.ORT_CPU(fp16=True),
            "cpu-int8": lambda v: v.Backend.ORT_CPU(int8=True),
            "cuda": lambda v: v.Backend.ORT_CUDA(), "cuda-fp16": lambda v: v.Backend.ORT_CUDA(fp16=True)}


def parse_method(spec: str) -> tuple[str, dict]:
    """``'NAME:{json kwargs}'`` (or just ``'NAME'`` for no kwargs) -> (name, kwargs).

    spec: the --method text.
    """
    name, sep, rest = spec.partition(":")
    name = name.strip()
    if not name:
        raise ValueError(f"--method {spec!r}: empty name")
    if not sep or not rest.strip():
        return name, {}
    kwargs = json.loads(rest)
    if not isinstance(kwargs, dict):
        raise ValueError(f"--method {spec!r}: kwargs must be a JSON object")
    return name, kwargs


def build_methods(extra: list[str] | None = None, only: list[str] | None = None) -> list[tuple[str, dict]]:
    """The default methods, with --method specs added (a default's name replaces it), filtered by --only.

    extra: --method specs (parse_method).
    only: names to keep (None: all).
    """
    methods = list(DEFAULT_METHODS)
    for spec in extra or []:
        name, kw = parse_method(spec)
        methods = [m for m in methods if m[0] != name] + [(name, kw)]
    if only is not None:
        methods = [m for m in methods if m[0] in only]
    return methods


def short_error(exc: BaseException, limit: int = 120) -> str:
    """An exception as one short line: its type and the first line of its message.

    exc: the exception.
    limit: most characters.
    """
    msg = (str(exc).strip().splitlines() or [""])[0]
    text = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def with_backend(kwargs: dict) -> dict:
    """Method kwargs are JSON: a backend is named ("cpu", "cpu-fp16", "cpu-int8", "cuda", "cuda-fp16").

    kwargs: the method's keyword arguments; a "backend" string becomes the Backend it names.
    """
    import vsvitm
    b = kwargs.get("backend")
    if b is None or not isinstance(b, str):
        return kwargs
    if b not in BACKENDS:
        raise ValueError(f"unknown backend {b!r}; use one of {', '.join(BACKENDS)}")
    return {**kwargs, "backend": BACKENDS[b](vsvitm)}


def make_method_clip(ldr: np.ndarray, kwargs: dict, fps: tuple[int, int] = (24, 1)):
    """LDR uint8 [T,H,W,3] -> the vsvitm.ITM output clip for these kwargs.

    ldr: the frames.
    kwargs: the method's ITM keyword arguments.
    fps: the clip's frame rate (numerator, denominator).
    """
    import vsvitm
    from vsvitm.vsnp import clip_from_array

    clip = clip_from_array(ldr, fps=fps)
    return vsvitm.ITM(clip, **with_backend(kwargs))


def run_method(ldr: np.ndarray, kwargs: dict, fps: tuple[int, int] = (24, 1),
               indices: list[int] | None = None) -> tuple[np.ndarray, float]:
    """Render a method; returns (linear float32 [N,H,W,3], seconds per rendered frame).
    Node creation (model loading) is not timed.

    ldr: LDR uint8 [T,H,W,3].
    kwargs: the method's ITM keyword arguments.
    fps: the clip's frame rate (numerator, denominator).
    indices: render only these frames (None: all).
    """
    from vsvitm.vsnp import frame_to_array

    out = make_method_clip(ldr, kwargs, fps)
    idx = list(range(out.num_frames)) if indices is None else list(indices)
    t0 = time.perf_counter()
    frames = [frame_to_array(out.get_frame(n)) for n in idx]
    dt = time.perf_counter() - t0
    arr = np.stack(frames).astype(np.float32)
    if arr.shape[1:3] != ldr.shape[1:3] or arr.shape[-1] != 3:
        raise ValueError(f"output shape {arr.shape} does not match input {ldr.shape}")
    return arr, dt / max(len(idx), 1)
