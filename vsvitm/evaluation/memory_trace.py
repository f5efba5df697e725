"""Where the memory goes (vsvitm-memory-trace): RSS of one ITM render sampled every 0.1 s, with the
engine stages running (Engine.icam / merge / propagate) when it peaked.

    vsvitm-memory-trace --size 1920x1080 [--frames 3] [--start 0] [--num-refs 4] [--chunk C --margin M] [--vs-cache-mb 0]
                        [--cache-mb 1024] [--src samples/london_pan_320x240.mp4]

Renders frames start.. of the sample clip resized to --size through vsvitm.ITM (shipped models, CPU),
prefetch 2, and prints RSS after the first and the last frame and the peak with the active stages.
vsvitm-benchmark gives the peak of a steady-state window; this says which stage makes it.
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time

from ..checkout import SAMPLE
from .hooks import watch_engine
from .machine import proc_status_kib


def rss_mib() -> int:
    """This process's resident memory (VmRSS), MiB (0 off Linux)."""
    return (proc_status_kib("VmRSS") or 0) // 1024


def heap_mib() -> dict[str, int]:
    """glibc's view (mallinfo2, all arenas), MiB: `in_use` (malloc'ed and not freed, heap and mmapped
    chunks), `kept` (freed but still held in the heaps: RSS that nothing uses); {} off glibc."""
    import ctypes

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                    "fsmblks", "uordblks", "fordblks", "keepcost")]
    try:
        f = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return {}
    f.restype = MallInfo2
    m = f()
    return {"in_use": (m.uordblks + m.hblkhd) >> 20, "kept": m.fordblks >> 20}


def malloc_arenas() -> int | None:
    """How many malloc arenas glibc has made in this process (malloc_info's <heap> entries), or None
    off glibc. vsvitm caps them at the core count (engine.limit_malloc_arenas)."""
    import ctypes
    import tempfile
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.fopen.restype = ctypes.c_void_p
        with tempfile.NamedTemporaryFile(suffix=".xml") as tmp:
            fp = libc.fopen(tmp.name.encode(), b"w")
            if not fp or libc.malloc_info(0, ctypes.c_void_p(fp)) != 0:
                return None
            libc.fclose(ctypes.c_void_p(fp))
            return open(tmp.name).read().count("<heap nr=")
    except (OSError, AttributeError):
        return None


def build_parser() -> argparse.ArgumentParser:
    """vsvitm-memory-trace's command line."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--frames", type=int, default=3)
    ap.add_argument("--start", type=int, default=0,
                    help="first frame rendered (default 0, the clip's start: few references; 114 = vsvitm-benchmark's "
                         "steady-state warm-up, every key frame with all its references)")
    ap.add_argument("--num-refs", type=int, help="references each way (default: ITM's, itm.NUM_REFS)")
    ap.add_argument("--chunk", type=int, help="ITM's Tuning(chunk=...) (default: ITM's at --size)")
    ap.add_argument("--margin", type=int, help="ITM's Tuning(margin=...) (default: ITM's at --size)")
    ap.add_argument("--vs-cache-mb", type=int, default=0, help="core.max_cache_size (default: VapourSynth's)")
    ap.add_argument("--cache-mb", type=int, default=1024, help="ITM's Tuning(cache_mb=...)")
    ap.add_argument("--src", default=str(SAMPLE))
    ap.add_argument("--threads", type=int, default=0, help="core.num_threads (default: VapourSynth's)")
    ap.add_argument("--models", help="model folder (default: the package's)")
    return ap


class Peak:
    """The highest RSS seen by a thread sampling every 0.1 s, with the engine stages running then and what
    held the memory (heap, VapourSynth's cache, the plugin's caches)."""

    def __init__(self, core):
        """core: the VapourSynth core (its frame cache is reported)."""
        from vsvitm import engine
        self.core, self.lock = core, threading.Lock()
        self.active: dict[str, int] = {}
        self.engines: list = []
        self.rss, self.running, self.parts = 0, {}, {}
        self.done = threading.Event()
        init = engine.Engine.__init__

        def keep(eng, *args, **kw):   # the first engine's caches are reported
            init(eng, *args, **kw)
            self.engines.append(eng)
        engine.Engine.__init__ = keep

    def enter(self, name: str, args) -> None:
        """A stage starts (hooks.watch_engine).

        name: the Engine method.
        args: its arguments (unused).
        """
        with self.lock:
            self.active[name] = self.active.get(name, 0) + 1

    def leave(self, name: str) -> None:
        """A stage ends (hooks.watch_engine).

        name: the Engine method.
        """
        with self.lock:
            self.active[name] -= 1

    def breakdown(self) -> dict[str, int]:
        """What holds the memory now, MiB: the heap (in use / freed but kept), VapourSynth's frame cache,
        the plugin's caches (key results, merged frames, chunks; pre-flows; lumas)."""
        out = heap_mib()
        out["vs_cache"] = self.core.used_cache_size >> 20
        if self.engines:
            e = self.engines[0]
            out["itm_cache"] = (e.results.size_bytes + e.flows.size_bytes + e.lumas.size_bytes) >> 20
        return out

    def monitor(self) -> None:
        """Sample until done is set (run in a thread)."""
        while not self.done.is_set():
            r = rss_mib()
            if r > self.rss:
                parts = self.breakdown()
                with self.lock:
                    self.rss, self.running, self.parts = r, {k: v for k, v in self.active.items() if v}, parts
            time.sleep(0.1)


def trace(a) -> int:
    """Render and report (see the module's docstring).

    a: the parsed command line.
    """
    w, h = (int(v) for v in a.size.lower().split("x"))
    import vapoursynth as vs
    import vsvitm
    from vsvitm import engine
    from vsvitm.itm import NUM_REFS
    a.num_refs = NUM_REFS["temporal"] if a.num_refs is None else a.num_refs
    core = vs.core
    if a.vs_cache_mb:
        core.max_cache_size = a.vs_cache_mb
    if a.threads:
        core.num_threads = a.threads
    src = core.resize.Bicubic(core.bs.VideoSource(a.src), w, h)
    peak = Peak(core)
    with watch_engine(("icam", "merge", "propagate"), peak.enter, peak.leave):
        threading.Thread(target=peak.monitor, daemon=True).start()
        out = vsvitm.ITM(src, num_refs=a.num_refs, models=a.models,
                         tuning=dict(cache_mb=a.cache_mb, chunk=a.chunk, margin=a.margin))
        t0 = time.time()
        for i, _ in enumerate(out[a.start:].frames(prefetch=2)):
            if i == 0 or i + 1 == a.frames:
                print(f"frame {i}: {time.time() - t0:.0f} s, RSS {rss_mib()} MiB, peak so far {peak.rss} MiB "
                      f"(running then: {peak.running or 'nothing'})", flush=True)
            if i + 1 >= a.frames:
                break
        peak.done.set()
    print(f"{a.size} start={a.start} num_refs={a.num_refs} chunk={a.chunk or 'default'} margin={a.margin if a.margin is not None else 'default'} vs_cache_mb={a.vs_cache_mb or core.max_cache_size} cache_mb={a.cache_mb} "
          f"threads={core.num_threads}: "
          f"peak RSS {peak.rss} MiB while {peak.running or 'nothing'} ran; then (MiB) {peak.parts}; malloc arenas {malloc_arenas()} "
          f"(cap {engine.limit_malloc_arenas() or 'none'})")
    return 0


def main(argv=None) -> None:
    """Entry point of vsvitm-memory-trace. Ends the process when the measurement is done: frames
    prefetched past the last one are still rendering, and it does not wait for them.

    argv: command-line arguments (None: sys.argv[1:]).
    """
    rc = trace(build_parser().parse_args(argv))
    sys.stdout.flush()
    os._exit(rc)


if __name__ == "__main__":
    main()
