"""vsvitm.stages.temporal: the default mode's stages, and the key frame computed ahead of a previewer."""
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import vapoursynth as vs

import vsvitm
from vsvitm.stages.temporal import KeyAhead
from vsvitm.vsnp import clip_from_array, frame_to_array

from conftest import moving_clip

core = vs.core


def test_next_key_frame_is_computed_ahead_of_a_previewer(tiny_models, monkeypatch):
    """Stepping one frame at a time, the key frame after the ones a frame needs is computed in the
    background (a thread named vsvitm-key-ahead) before the step that needs it, once, with the same result."""
    from vsvitm.engine import Engine
    calls = []
    icam = Engine.icam
    monkeypatch.setattr(Engine, "icam", lambda self, k, c, refs: calls.append(
        (k, bool(refs), threading.current_thread().name)) or icam(self, k, c, refs))
    src = clip_from_array(moving_clip(30))
    clip = vsvitm.ITM(src, key_stride=6, models=tiny_models)   # key frames 3, 9, 15, 21, 27
    stepped = {}
    for n in range(5):
        stepped[n] = frame_to_array(clip.get_frame(n))
        _wait_for_key_ahead()
    ahead = {k for k, refs, name in calls if refs and name == "vsvitm-key-ahead"}
    # frames 0-3 need key frame 3 (9 is started ahead); frame 4 needs 3 and 9 (15 is started ahead)
    assert ahead == {9, 15}
    keyed = [k for k, refs, _ in calls if refs]
    assert sorted(keyed) == sorted(set(keyed))
    fresh = vsvitm.ITM(src, key_stride=6, models=tiny_models)
    for n in range(4, -1, -1):
        np.testing.assert_array_equal(stepped[n], frame_to_array(fresh.get_frame(n)))


def _wait_for_key_ahead():
    for _ in range(200):   # a previewer's pause between steps
        if not any(t.name == "vsvitm-key-ahead" for t in threading.enumerate()):
            return
        time.sleep(0.05)
    raise AssertionError("the key frame computed ahead did not finish")


class _Cache(dict):
    def put(self, k, v):
        self[k] = v


def test_key_ahead_makes_each_key_once_and_survives_a_failed_prefetch():
    """once() runs make() once for callers that ask together; a prefetch that raises leaves the key to the
    filter and lets the next key start."""
    cache, made = _Cache(), []
    gate = threading.Event()

    def make():
        gate.wait(5)
        made.append(1)
        return "map"
    ahead = KeyAhead(cache, lambda k, refs: ahead.once(("keymap", k, tuple(refs)), make))
    threads = [threading.Thread(target=lambda: ahead.once(("keymap", 3, (1, 5)), make)) for _ in range(3)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join(5)
    assert made == [1] and cache[("keymap", 3, (1, 5))] == "map"

    def fail(k, refs):
        raise RuntimeError("the clip went away")
    broken = KeyAhead(_Cache(), fail)
    broken.start(9, [3, 15])
    _wait_for_key_ahead()
    broken.prefetch = lambda k, refs: made.append(k)
    broken.start(15, [9, 21])
    for _ in range(100):
        if 15 in made:
            break
        time.sleep(0.02)
    assert 15 in made


def test_exit_waits_for_the_key_frame_computed_ahead(tiny_models, tmp_path):
    """A script that exits while a key frame is being computed ahead exits cleanly (no abort from a
    VapourSynth request or network run still in flight), after that computation has finished."""
    marker = tmp_path / "finished"
    script = tmp_path / "step_and_exit.py"
    script.write_text(textwrap.dedent(f"""
        import threading, time
        import vsvitm
        from vsvitm.engine import Engine
        from vsvitm.vsnp import clip_from_array
        from conftest import moving_clip
        icam = Engine.icam
        def slow(self, k, c, refs):
            out = icam(self, k, c, refs)
            if threading.current_thread().name == "vsvitm-key-ahead" and refs:
                time.sleep(1.0)
                open({str(marker)!r}, "a").write(f"{{k}}\\n")
            return out
        Engine.icam = slow
        clip = vsvitm.ITM(clip_from_array(moving_clip(30)), key_stride=6, models={str(tiny_models)!r})
        clip.get_frame(4)
        assert any(t.name == "vsvitm-key-ahead" for t in threading.enumerate())
    """))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    assert marker.read_text().split() == ["15"]


def test_key_ahead_alone_makes_one_map_at_a_time():
    """alone=True (large frames on the CPU): two different key frames' maps never run at the same time."""
    running, peak, lock = [0], [0], threading.Lock()

    def make():
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.3)
        with lock:
            running[0] -= 1
        return "map"
    for alone in (True, False):
        running[0] = peak[0] = 0
        ahead = KeyAhead(_Cache(), None, alone=threading.Lock() if alone else None)
        threads = [threading.Thread(target=ahead.once, args=(("keymap", k, ()), make)) for k in (3, 9, 15)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(5)
        assert peak[0] == 1 if alone else peak[0] >= 2


def test_large_frames_run_one_icam_at_a_time(tiny_models, monkeypatch):
    """From NETWORK_ALONE_PIXELS on the CPU, single-frame and key-frame ICAM runs never overlap, whatever
    the threads and the key frame computed ahead do, and the frames are the same."""
    from vsvitm.engine import Engine
    from vsvitm.stages import temporal as stage
    running, peak, lock = [0], [0], threading.Lock()
    icam = Engine.icam

    def counted(self, k, c, refs):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            return icam(self, k, c, refs)
        finally:
            with lock:
                running[0] -= 1
    monkeypatch.setattr(Engine, "icam", counted)
    src = clip_from_array(moving_clip(30))
    ref = [frame_to_array(f) for f in vsvitm.ITM(src, key_stride=6, models=tiny_models).frames(prefetch=4)]
    monkeypatch.setattr(stage, "NETWORK_ALONE_PIXELS", 1)
    old = core.num_threads
    core.num_threads = 4
    try:
        peak[0] = 0
        out = [frame_to_array(f) for f in vsvitm.ITM(src, key_stride=6, models=tiny_models).frames(prefetch=4)]
    finally:
        core.num_threads = old
    assert peak[0] == 1
    for a, b in zip(ref, out):
        np.testing.assert_array_equal(a, b)
