"""Wrappers the measurement tools put around the engine and ONNX Runtime: calls counted and timed per
graph (vsvitm-benchmark), a graph's real inputs captured (vsvitm-quantize), engine stages watched
(vsvitm-memory-trace, vsvitm-farm-benchmark). Each wraps public functions of vsvitm.backends, vsvitm.flow
and vsvitm.engine in this process only; the numbers the plugin computes do not change.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np


def name_sessions(names: dict[int, str], strip: bool = True):
    """Wrap backends.session so that every session made from a file is named after it in `names`;
    returns the unwrapped function.

    names: {id(session): graph name}, filled as sessions are made.
    strip: drop the _fp16 / _int8 suffix (a variant counts as its graph).
    """
    from vsvitm import backends
    orig = backends.session

    def session(path, backend):
        s = orig(path, backend)
        stem = Path(path).stem
        names[id(s)] = stem.replace("_fp16", "").replace("_int8", "") if strip else stem
        return s

    backends.session = session
    return orig


class GraphCounter:
    """Calls and summed wall time of every ONNX graph and of DIS flow (over all threads) in this process;
    counted while `on` is true, into stats {name: [calls, seconds]}."""

    def __init__(self):
        self.lock = threading.Lock()
        self.names: dict[int, str] = {}
        self.stats: dict[str, list] = {}
        self.on = False
        self.inside = threading.local()  # a graph run band by band: one call, the bands' run times summed

    def add(self, name: str, dt: float, calls: int = 1):
        """Count calls of `name` taking dt seconds in all (while counting is on).

        name: the graph or part.
        dt: seconds.
        calls: how many calls dt covers.
        """
        if self.on:
            with self.lock:
                s = self.stats.setdefault(name, [0, 0.0])
                s[0] += calls
                s[1] += dt

    def timed(self, fn, name_of, calls_of=lambda: 1):
        """fn wrapped: each call's time added under name_of(*args).

        fn: the function to time.
        name_of: the name a call counts under, from the call's arguments.
        calls_of: how many calls a call counts as (0 inside a banded run).
        """
        def wrapped(*args, **kw):
            t = time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                self.add(name_of(*args), time.perf_counter() - t, calls_of())
        return wrapped

    def install(self):
        """Wrap the session makers, graph runs, pre-flows, CPU warps and banded runs (for good)."""
        from vsvitm import backends, engine, flow
        name_sessions(self.names)
        orig_aux = backends.aux_session

        def aux_session(name, make, backend):  # the engine's own small graphs: round_half, merge_prep_K_E
            s = orig_aux(name, make, backend)
            self.names[id(s)] = name.rstrip("_0123456789")
            return s

        def graph(sess, *_):
            return self.names.get(id(sess), "?")
        backends.aux_session = aux_session
        backends.run = self.timed(backends.run, graph, lambda: 0 if getattr(self.inside, "banded", False) else 1)
        backends.run_bound = self.timed(backends.run_bound, graph)  # IO binding (CUDA): ICAM's and FCPM's steps
        # ICAM's pre-flows when its manifest asks for them: HomographyDIS inherits calc, so it gets its own
        flow.DISFlow.calc = self.timed(flow.DISFlow.calc, lambda *_: "dis_flow")
        flow.HomographyDIS.calc = self.timed(flow.HomographyDIS.calc, lambda *_: "dis_flow_homography")
        # OpenCV warps of the CPU path (FCPM state, merge inputs)
        flow.warp_planes = self.timed(flow.warp_planes, lambda *_: "cpu_warp")
        orig_banded = engine.Engine.run_banded   # a graph run band by band counts as one call

        def banded(self_, graph_name, *args, **kw):
            self.inside.banded = True
            try:
                return orig_banded(self_, graph_name, *args, **kw)
            finally:
                self.inside.banded = False
                self.add(graph_name, 0.0)
        engine.Engine.run_banded = banded


@contextmanager
def graph_inputs(graphs: tuple[str, ...]):
    """Within the block, every CPU run of a graph in `graphs` appends a float32 copy of its inputs to
    the yielded {graph: [feeds, ...]}; sessions must be made within the block (ITM() inside it).

    graphs: the graph names (file stems) to capture.
    """
    from vsvitm import backends
    got: dict[str, list[dict]] = {g: [] for g in graphs}
    names: dict[int, str] = {}
    lock = threading.Lock()
    orig_run = backends.run

    def run(sess, feeds):
        graph = names.get(id(sess))
        if graph in got:
            with lock:
                got[graph].append({k: np.array(v, np.float32) for k, v in feeds.items()})
        return orig_run(sess, feeds)

    orig_session = name_sessions(names, strip=False)
    backends.run = run
    try:
        yield got
    finally:
        backends.session, backends.run = orig_session, orig_run


@contextmanager
def watch_engine(names: tuple[str, ...], enter, leave=None):
    """Within the block, each call of Engine.<name> for the names given calls enter(name, args) first
    and leave(name) when it returns or raises.

    names: Engine method names (icam, merge, propagate).
    enter: called with the method's name and its positional arguments (after self).
    leave: called with the method's name afterwards (None: nothing).
    """
    from vsvitm import engine
    orig = {n: getattr(engine.Engine, n) for n in names}
    own = {n for n in names if n in vars(engine.Engine)}  # the others come from a base class

    def wrap(name, fn):
        def watched(self, *args, **kw):
            enter(name, args)
            try:
                return fn(self, *args, **kw)
            finally:
                if leave is not None:
                    leave(name)
        return watched

    for n, fn in orig.items():
        setattr(engine.Engine, n, wrap(n, fn))
    try:
        yield
    finally:
        for n, fn in orig.items():
            if n in own:
                setattr(engine.Engine, n, fn)
            else:
                delattr(engine.Engine, n)
