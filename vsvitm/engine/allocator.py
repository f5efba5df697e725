"""glibc allocator tuning for large renders: arena cap, mmap threshold, heap trim (no-ops off glibc)."""
from __future__ import annotations

import os
import sys

# From this many pixels on, freed heap memory goes back to the system (glibc malloc_trim) after each
# key frame's ICAM and each merge, as after every chunk's recurrence: at 1920x1080 the heap kept
# what one stage freed while the next allocated elsewhere (a render's peak RSS: 4872 MiB without,
# 3810 and 4351 with; vsvitm-memory-trace, BENCHMARKS.md). Not below: the pages freed
# are faulted in again by the next graph run (trimming after every run cost 19 % at 512x512).
TRIM_PIXELS = 1 << 20
# From TRIM_PIXELS on, on the CPU, heap blocks from this size on are mmapped (glibc M_MMAP_THRESHOLD):
# each goes back to the system when freed instead of staying in the heap. At 1920x1080 the heap kept
# 1.3-1.5 GB that one stage had freed while the next allocated elsewhere: a render's peak RSS was
# 4357/4513 MiB, and 3565 MiB with this (vsvitm-memory-trace, BENCHMARKS.md). Not below
# 1 MP (at 512x512 it cost 27 %: every block faulted in again on each graph run), nor on CUDA (where
# speed is the aim and the networks' activations live on the GPU).
MMAP_THRESHOLD = 1 << 20

_mallopt_done: dict[int, int] = {}
_malloc_trim = None


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


def limit_malloc_arenas() -> int:
    """Cap glibc's malloc arenas at the number of cores (at least 2), once per process; returns the
    cap, or 0 where nothing was done. Why: glibc makes up to 8 arenas per core, one per thread that
    meets a locked one, and keeps each arena's freed memory. A 1920x1080 render holds GB-sized
    transients on several threads: its steady-state peak was 9.4-10.3 GiB with the default and
    8.5-9.0 GiB with the cap, at no measured speed cost (BENCHMARKS.md). Not done when the user set
    MALLOC_ARENA_MAX (glibc read it at start), or with VSVITM_MALLOC_ARENA_MAX=0; another value
    of VSVITM_MALLOC_ARENA_MAX is the cap."""
    return _mallopt_once(-8, "MALLOC_ARENA_MAX", "VSVITM_MALLOC_ARENA_MAX", max(2, os.cpu_count() or 2))  # M_ARENA_MAX


def mmap_large_blocks() -> int:
    """Set glibc's mmap threshold to MMAP_THRESHOLD, once per process (it is global to the process and
    never undone: a later small render in the same process keeps it). Returns the threshold set, or 0
    where nothing was done: off glibc, when the user set MALLOC_MMAP_THRESHOLD_ (glibc read it at start),
    or with VSVITM_MMAP_THRESHOLD=0; another value of VSVITM_MMAP_THRESHOLD (bytes) is the threshold."""
    return _mallopt_once(-3, "MALLOC_MMAP_THRESHOLD_", "VSVITM_MMAP_THRESHOLD", MMAP_THRESHOLD)  # M_MMAP_THRESHOLD


def trim_heap() -> None:
    """Give freed heap memory back to the OS (glibc). With ORT's arena off, activations are malloc'ed
    per call from several threads' malloc arenas; without this RSS crept up in vsvitm-soak."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            import ctypes
            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


def trim_after(pixels: int) -> None:
    """trim_heap() after a stage on a frame of this many (padded) pixels, from TRIM_PIXELS on."""
    if pixels >= TRIM_PIXELS:
        trim_heap()
