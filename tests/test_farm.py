"""vsvitm-farm on a local Ray instance: joins equal a single vspipe render byte for byte, with a
fault injected, after a resume; bad input gives one error line and exit status 2; an HEVC run is
HDR10 with the source's frame count."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import vspipe_ok
from vsvitm import farm

pytestmark = pytest.mark.skipif(not vspipe_ok(), reason="vspipe does not run here")

FRAMES, W, H = 60, 64, 64    # x265 needs a picture at least 64 high
SCRIPT = f"""
import numpy as np
import vapoursynth as vs
import vsvitm
core = vs.core
rng = np.random.default_rng(0)
base = rng.random(({H}, {3 * W})).astype(np.float32)
blank = core.std.BlankClip(width={W}, height={H}, format=vs.RGB24, length={FRAMES}, fpsnum=24, fpsden=1)

def make(n, f):
    # a pan with a swinging exposure (highlights clip in some frames) and a cut at frame 33
    out = f.copy()
    x0 = n % {W}
    view = base[:, x0:x0 + {W}] if n < 33 else base[::-1, ::-1][:, x0:x0 + {W}] * 0.5
    e = 0.6 + 0.6 * np.sin(n / 5)
    for p, g in enumerate((1.0, 0.9, 0.8)):
        lin = np.clip(view * e * g * 1.6, 0, 1)
        np.asarray(out[p])[:] = (lin ** (1 / 2.2) * 255 + 0.5).astype(np.uint8)
    return out

clip = core.resize.Bicubic(core.std.ModifyFrame(blank, blank, make), format=vs.YUV420P8, matrix_s="709")
vsvitm.to_hdr10(vsvitm.ITM(clip)).set_output()
"""


def vspipe() -> str:
    return farm.vspipe_exe()


def run_farm(*args, env=None, cwd=None):
    e = dict(os.environ)
    e.pop(farm.FAULT_ENV, None)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "vsvitm.farm", *map(str, args)], capture_output=True, text=True,
                          env=e, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """The test script and its single-process render (y4m bytes)."""
    d = tmp_path_factory.mktemp("farm")
    script = d / "clip.vpy"
    script.write_text(SCRIPT)
    ref = subprocess.run([vspipe(), "-c", "y4m", str(script), "-"], capture_output=True, timeout=300)
    assert ref.returncode == 0, ref.stderr.decode()[-2000:]
    return script, ref.stdout


@pytest.fixture(scope="module")
def cluster():
    """One local Ray instance for the module; farm runs join it with --address (and so run the
    per-node checks)."""
    ray = pytest.importorskip("ray", reason="the farm needs ray (pip install -e .[test])")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def error_lines(r) -> list[str]:
    return [ln for ln in r.stderr.splitlines() if ln.strip()]


# --- plan ------------------------------------------------------------------------------------


def test_segments_follow_the_chunk_grid():
    assert farm.plan_segments(60, 20, 24) == [(0, 24), (24, 48), (48, 60)]
    assert farm.plan_segments(100, 24, 12) == [(0, 24), (24, 48), (48, 72), (72, 96), (96, 100)]
    assert farm.plan_segments(10, 1920, 24) == [(0, 10)]
    with pytest.raises(farm.FarmError):
        farm.plan_segments(10, 0, 24)


def test_planned_overhead():
    sched = farm.schedule_for(10_000, 512, 512)
    aligned = farm.segment_extra(sched, 2400, 2880, "full")
    assert aligned["steps"] == 0                        # no chunk straddles an aligned edge
    assert aligned["merged"] == 2 * sched.margin        # the edge chunks' margins
    assert aligned["keys"] > 0 and aligned["reads"] >= 2 * sched.reach
    cut = farm.segment_extra(sched, 2410, 2890, "full")
    assert cut["steps"] > 0
    assert farm.planned_overhead(sched, 2410, 2890, "full") > farm.planned_overhead(sched, 2400, 2880, "full")
    temporal = farm.segment_extra(sched, 2400, 2880, "temporal")
    assert temporal["keys"] == 2 and temporal["merged"] == temporal["steps"] == 0   # the key before and after
    assert farm.segment_extra(sched, 2400, 2880, "linear")["keys"] == 0
    for mode in ("full", "temporal"):
        costs = [farm.planned_overhead(sched, 2400, 2400 + n, mode) for n in (96, 480, 1920)]
        assert costs[0] > costs[1] > costs[2] > 0
        # the default segment keeps a feature film's plan within 5 %, at both chunk sizes
        for w, h in ((512, 512), (1920, 1080)):
            s = farm.schedule_for(130_000, w, h)
            assert farm.overhead_of_plan(s, farm.plan_segments(130_000, farm.DEFAULT_SEGMENT, s.chunk), mode) <= 0.05
        assert farm.overhead_of_plan(sched, farm.plan_segments(10_000, 48, sched.chunk), mode) > 0.05


def test_segment_extra_matches_the_whole_schedule():
    """The edge-only count equals walking every frame of the segment through the schedule."""
    from vsvitm.itm import key_weights
    sched = farm.schedule_for(400, 512, 512)
    for start, end in [(0, 96), (96, 192), (120, 200), (312, 400), (24, 48), (100, 101)]:
        keys = {k for t in range(start, end) for k, _ in key_weights(t, sched.keys_in(0, 400))}
        assert farm.segment_extra(sched, start, end, "temporal")["keys"] == len(keys - set(range(start, end)))
    for start, end in [(0, 96), (96, 192), (120, 200), (312, 400), (24, 48)]:
        merged, keys, steps = set(), set(), 0
        for cs, ce, rs, re_ in {sched.chunk_of(t, []) for t in range(start, end)}:
            merged.update(range(rs, re_))
            steps += (re_ - rs) if (cs < start or ce > end) else 0
        for t in merged:
            keys.update(sched.nearest_keys(t, []))
        x = farm.segment_extra(sched, start, end, "full")
        assert x["merged"] == len([t for t in merged if not start <= t < end]), (start, end)
        assert x["keys"] == len([k for k in keys if not start <= k < end]), (start, end)
        assert x["steps"] == steps, (start, end)


def test_dry_run_prints_the_plan(clip):
    script, _ = clip
    r = run_farm(script, "--dry-run", "--segment", 20)
    assert r.returncode == 0, r.stderr
    assert "segments: 3 of 24 frames (the last 12)" in r.stdout
    assert r.stdout.count("planned overhead") == 4


def test_source_paths_and_node_check(tmp_path):
    media = tmp_path / "media.mp4"
    media.write_bytes(b"x")
    script = tmp_path / "s.vpy"
    script.write_text(f"src = {str(media)!r}\nother = 'not/a/file.mp4'\n")
    assert farm.source_paths(script, ["x=media.mp4", "y=3"], str(tmp_path)) == [str(media.resolve())]
    res = farm.check_node([str(media), str(tmp_path / "gone.vpy")], ["vspipe", "surely-not-a-tool-xyz"])
    assert res["missing"] == [str(tmp_path / "gone.vpy")] and res["tools"] == ["surely-not-a-tool-xyz"]


# --- errors ----------------------------------------------------------------------------------


def test_console_script_is_installed():
    exe = Path(sys.executable).with_name("vsvitm-farm")
    assert exe.exists(), "vsvitm-farm is missing: pip install -e . (setup.cfg's console_scripts)"
    r = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--segment" in r.stdout


def test_bad_input_is_one_line_and_status_2(tmp_path, clip):
    script, _ = clip
    missing_src = tmp_path / "missing_source.vpy"
    missing_src.write_text("import vapoursynth as vs\nvs.core.bs.VideoSource('/nonexistent/film.mkv').set_output()\n")
    cases = [
        ([tmp_path / "nope.vpy", "-o", tmp_path / "o.y4m", "--raw"], "nope.vpy"),
        ([missing_src, "-o", tmp_path / "o.y4m", "--raw"], "/nonexistent/film.mkv"),
        ([script, "-o", tmp_path / "o.y4m", "--raw", "--frobnicate"], "--frobnicate"),
    ]
    for args, named in cases:
        r = run_farm(*args)
        lines = error_lines(r)
        assert r.returncode == 2, (args, r.stderr)
        assert len(lines) == 1 and lines[0].startswith("vsvitm-farm: error:") and named in lines[0], r.stderr
    assert not list(tmp_path.glob("o.y4m*"))


# --- renders ---------------------------------------------------------------------------------


def test_raw_join_equals_vspipe(tmp_path, clip):
    """Its own local Ray instance (no --address), as a user on one machine runs it."""
    pytest.importorskip("ray")
    script, ref = clip
    out = tmp_path / "out.y4m"
    r = run_farm(script, "--raw", "--segment", 20, "-o", out)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == ref
    assert not (tmp_path / "out.y4m.farm").exists()       # the work directory goes after the join


@pytest.mark.parametrize("fault", ["1", "0:kill"])
def test_fault_is_retried_and_the_join_is_identical(tmp_path, clip, cluster, fault):
    script, ref = clip
    out, work = tmp_path / "out.y4m", tmp_path / "work"
    r = run_farm(script, "--raw", "--segment", 20, "-o", out, "--address", cluster, "--work-dir", work, "--keep",
                 env={farm.FAULT_ENV: fault})
    assert r.returncode == 0, r.stderr
    seg = int(fault.split(":")[0])
    assert (work / f".fault_{seg:05d}").exists()          # the fault did fire
    assert out.read_bytes() == ref
    assert not list(work.glob(".seg_*"))                  # no temporary file survives
    manifest = json.loads((work / "manifest.json").read_text())
    assert sorted(manifest["segments"]) == ["0", "1", "2"]
    for ent in manifest["segments"].values():
        assert farm.sha256_file(work / ent["file"]) == ent["sha256"]


def test_resume_renders_only_missing_segments(tmp_path, clip, cluster):
    script, ref = clip
    out, work = tmp_path / "out.y4m", tmp_path / "work"
    common = [script, "--raw", "--segment", 20, "-o", out, "--address", cluster, "--work-dir", work, "--keep"]
    r = run_farm(*common, "--workers", 1, env={farm.FAULT_ENV: "1:always"})
    assert r.returncode == 1
    assert "segment 1 (frames 24-47) failed 3 times" in r.stderr and "injected fault" in r.stderr
    assert not out.exists()
    done = json.loads((work / "manifest.json").read_text())["segments"]
    assert sorted(done) == ["0"]                          # one at a time: segment 2 never started
    before = {k: (work / e["file"]).stat().st_mtime_ns for k, e in done.items()}

    r = run_farm(*common, "--resume")
    assert r.returncode == 0, r.stderr
    assert "resume: 1 of 3 segments done, 2 to render" in r.stderr
    after = json.loads((work / "manifest.json").read_text())["segments"]
    assert sorted(after) == ["0", "1", "2"]
    for k, t in before.items():
        assert (work / after[k]["file"]).stat().st_mtime_ns == t and after[k] == done[k]
    assert out.read_bytes() == ref

    # a resume after the clip changed is refused (the manifest is for another job)
    script2 = tmp_path / "other.vpy"
    script2.write_text(script.read_text().replace("* 1.6", "* 1.5"))
    r = run_farm(script2, *common[1:], "--resume")
    assert r.returncode == 2 and "is for another job" in r.stderr


@pytest.mark.skipif(not (shutil.which("x265") and shutil.which("ffmpeg") and shutil.which("ffprobe")),
                    reason="needs x265, ffmpeg and ffprobe (apt-get install x265 ffmpeg)")
def test_hevc_run_is_hdr10(tmp_path, clip, cluster):
    script, _ = clip
    for name in ("out.mkv", "out.hevc"):
        out = tmp_path / name
        r = run_farm(script, "--segment", 20, "-o", out, "--address", cluster, "--x265", "--preset ultrafast")
        assert r.returncode == 0, r.stderr
        probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                                "stream=pix_fmt,color_transfer,color_primaries,nb_read_frames", "-of", "json",
                                str(out)], capture_output=True, text=True, check=True)
        st = json.loads(probe.stdout)["streams"][0]
        assert st["pix_fmt"] == "yuv420p10le" and st["color_transfer"] == "smpte2084", st
        assert st["color_primaries"] == "bt2020" and int(st["nb_read_frames"]) == FRAMES, st
        frames = subprocess.run(["ffprobe", "-v", "error", "-read_intervals", "%+#1", "-show_frames", "-of", "json",
                                 str(out)], capture_output=True, text=True, check=True)
        side = [sd.get("side_data_type") for f in json.loads(frames.stdout)["frames"]
                for sd in f.get("side_data_list", [])]
        assert "Mastering display metadata" in side and "Content light level metadata" in side, side
    pts = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "frame=pts",
                          "-of", "json", str(tmp_path / "out.mkv")], capture_output=True, text=True, check=True)
    times = [f["pts"] for f in json.loads(pts.stdout)["frames"]]
    assert times == sorted(times) and len(set(times)) == FRAMES     # presented in order, no duplicates
