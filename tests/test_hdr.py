"""vsvitm.hdr: linear RGB -> HDR10 / HLG, metadata props, encoder flags, and a real x265 encode."""
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import vapoursynth as vs

from vsvitm.hdr import (LightLevel, hdr10_ffmpeg_args, hdr10_metadata, hdr10_x265_args, hlg_x265_args,
                        measure_light_level, rolloff_expr, to_hdr10, to_hlg)

core = vs.core


def pq_encode(nits):
    m1, m2 = 2610 / 16384, 2523 / 4096 * 128
    c1, c2, c3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
    y = (np.asarray(nits, dtype=np.float64) / 10000) ** m1
    return ((c1 + c2 * y) / (1 + c3 * y)) ** m2


def code10(v):
    """Limited-range 10-bit luma code of a normalised value."""
    return np.round(64 + 876 * np.asarray(v))


def array_clip(rows: np.ndarray, fmt=vs.RGBS) -> vs.VideoNode:
    """One frame from an H x W x 3 float array."""
    h, w, _ = rows.shape
    blank = core.std.BlankClip(format=fmt, width=w, height=h, length=1)

    def fill(n, f):
        out = f.copy()
        for p in range(3):
            np.copyto(np.asarray(out[p]), rows[..., p], casting="unsafe")
        return out

    return core.std.ModifyFrame(blank, blank, fill)


def flat(value, fmt=vs.RGBS, **props):
    c = core.std.BlankClip(format=fmt, width=8, height=8, length=1, color=[value] * 3 if np.isscalar(value) else value)
    return core.std.SetFrameProps(c, **props) if props else c


def planes(clip):
    f = clip.get_frame(0)
    return [np.asarray(f[p]).astype(np.float64) for p in range(f.format.num_planes)]


def test_sdr_white_lands_on_203_nits():
    y, u, v = planes(to_hdr10(flat(1.0)))
    assert pq_encode(203) == pytest.approx(0.5807, abs=1e-4)
    assert np.all(y == code10(pq_encode(203))) and np.all(y == 573)
    assert np.all(u == 512) and np.all(v == 512)
    assert np.all(planes(to_hdr10(flat(0.0)))[0] == 64)
    # sdr_white moves it; values below the knee are untouched by the roll-off
    assert np.all(planes(to_hdr10(flat(1.0), sdr_white=100))[0] == code10(pq_encode(100)))
    assert np.all(planes(to_hdr10(flat(2.0)))[0] == code10(pq_encode(406)))


def test_leftover_sdr_props_are_overridden():
    """Props from the SDR input (BT.709 transfer, limited range) must not change the result."""
    tagged = flat(1.0, _Transfer=1, _Primaries=6, _Matrix=1, _Range=0)
    assert np.all(planes(to_hdr10(tagged))[0] == 573)


def test_rolloff_monotonic_and_bounded():
    ramp = np.concatenate([np.linspace(0, 12, 250), [20, 50, 1e3, 1e6, 1e30]]).astype(np.float32)
    rows = np.repeat(ramp[None, :, None], 3, axis=2)
    out = planes(to_hdr10(array_clip(rows), peak=1000, format=vs.RGBS))
    r = out[0][0]
    assert np.all(np.diff(r) >= -1e-6), "PQ output must not decrease as linear input increases"
    strict = ramp[:250] * 203 < 1500  # beyond that the curve is within float precision of the peak
    assert np.all(np.diff(r[:250][strict]) > 0)
    assert r.max() <= pq_encode(1000) + 1e-5
    assert r[-1] > pq_encode(990)  # asymptotic to the peak
    # identity below the knee (0.75 * 1000 nits)
    below = ramp[:250] * 203 < 740
    assert np.allclose(r[:250][below], pq_encode(ramp[:250][below] * 203), atol=2e-4)
    # the integer output (zimg's fast LUT transfer) stays within one code value of the exact curve
    y10 = planes(to_hdr10(array_clip(rows), peak=1000, format=vs.YUV444P10))[0][0]
    assert np.all(np.diff(y10) >= 0) and np.abs(y10 - code10(r)).max() <= 1
    # hard clip without roll-off
    hard = planes(to_hdr10(array_clip(rows), peak=1000, roll_off=False, format=vs.RGBS))[0][0]
    assert hard.max() == pytest.approx(pq_encode(1000), abs=2e-4)
    assert hard[100] == pytest.approx(pq_encode(ramp[100] * 203), abs=2e-4)


def test_rolloff_keeps_hue():
    rows = np.array([[[8.0, 4.0, 2.0]]], dtype=np.float32)
    e = rolloff_expr(203, 1000)
    src = array_clip(rows)
    rot1 = core.std.ShufflePlanes(src, [1, 2, 0], vs.RGB)
    rot2 = core.std.ShufflePlanes(src, [2, 0, 1], vs.RGB)
    out = np.array([p[0, 0] for p in planes(core.std.Expr([src, rot1, rot2], e))])
    assert out[0] * 203 < 1000 and out[0] * 203 > 750
    assert out[1] / out[0] == pytest.approx(0.5, rel=1e-5) and out[2] / out[0] == pytest.approx(0.25, rel=1e-5)


@pytest.mark.parametrize("fmt", [vs.RGBS, vs.RGBH])
def test_bad_values_stay_finite(fmt):
    src = core.std.Expr(flat(1.0, fmt), ["0 0 /", "1 0 /", "-1 0 /"])
    for out in (to_hdr10(src, format=vs.YUV444PS), to_hlg(src, format=vs.YUV444PS)):
        assert all(np.all(np.isfinite(p)) for p in planes(out))


def test_props_for_encoders_and_players():
    p = to_hdr10(flat(1.0), peak=1000, max_fall=250).get_frame(0).props
    assert p["_Transfer"] == 16 and p["_Primaries"] == 9 and p["_Matrix"] == 9
    assert p["_Range"] == vs.RANGE_LIMITED and p["_ChromaLocation"] == 0
    assert list(p["MasteringDisplayPrimariesX"]) == pytest.approx([0.680, 0.265, 0.150])
    assert list(p["MasteringDisplayPrimariesY"]) == pytest.approx([0.320, 0.690, 0.060])
    assert p["MasteringDisplayWhitePointX"] == pytest.approx(0.3127)
    assert p["MasteringDisplayWhitePointY"] == pytest.approx(0.3290)
    assert p["MasteringDisplayMaxLuminance"] == pytest.approx(1000)
    assert p["MasteringDisplayMinLuminance"] == pytest.approx(0.0001)
    assert p["ContentLightLevelMax"] == 0 and p["ContentLightLevelAverage"] == 250  # 0: unknown (CTA-861.3)
    p = to_hdr10(flat(1.0), max_cll=640.4, max_fall=120.6).get_frame(0).props
    assert p["ContentLightLevelMax"] == 640 and p["ContentLightLevelAverage"] == 121
    assert "--max-cll 0,0" in " ".join(hdr10_x265_args(1000))
    assert to_hdr10(flat(1.0)).format.id == vs.YUV420P10
    with pytest.raises(vs.Error, match="max_fall"):
        hdr10_metadata(1000, max_cll=400, max_fall=500)


# BT.2087: linear BT.709 RGB -> linear BT.2020 RGB
M709_TO_2020 = np.array([[0.6274, 0.3293, 0.0433], [0.0691, 0.9195, 0.0114], [0.0164, 0.0880, 0.8956]])


def light_clip():
    """Three 64x64 frames of linear RGB (1.0 = 203 cd/m²) with a known brightest pixel and frame average.
    Frame 0: grey 1.0 with an 8x8 grey block at 3.0 (609 cd/m², the clip's brightest pixel);
    frame 1: grey 2.0 everywhere (406 cd/m², the largest frame average); frame 2: grey 0.5 with one red
    pixel whose max(R, G, B) in BT.2020 is above its luminance."""
    h = w = 64
    frames = [np.ones((h, w, 3), np.float32), np.full((h, w, 3), 2.0, np.float32),
              np.full((h, w, 3), 0.5, np.float32)]
    frames[0][8:16, 8:16] = 3.0
    frames[2][40, 40] = [2.5, 0.2, 0.2]
    blank = core.std.BlankClip(format=vs.RGBS, width=w, height=h, length=3)

    def fill(n, f):
        out = f.copy()
        for p in range(3):
            np.copyto(np.asarray(out[p]), frames[n][..., p])
        return out
    return core.std.ModifyFrame(blank, blank, fill), frames


def test_measure_light_level(capsys):
    src, frames = light_clip()
    fall = max(float(f.max(-1).mean()) for f in frames) * 203                 # frame 1: 406
    assert fall == pytest.approx(406)
    # exact (float RGB PQ out): max(R, G, B) after BT.709 -> BT.2020, not luminance
    seen = []
    ll = measure_light_level(to_hdr10(src, format=vs.RGBS), progress=lambda d, t: seen.append((d, t)))
    assert isinstance(ll, LightLevel) and seen == [(1, 3), (2, 3), (3, 3)]
    assert ll.max_cll == pytest.approx(609, rel=1e-3) and ll.max_fall == pytest.approx(fall, rel=1e-3)
    red = float((M709_TO_2020 @ np.array([2.5, 0.2, 0.2])).max()) * 203          # 329 cd/m² in frame 2
    ll2 = measure_light_level(to_hdr10(src[2], format=vs.RGBS), progress=False)
    assert ll2.max_cll == pytest.approx(red, rel=2e-3)
    assert ll2.max_fall == pytest.approx((0.5 * (64 * 64 - 1) + red / 203) / (64 * 64) * 203, rel=1e-3)
    # the encoded format (limited-range 10-bit 4:2:0 YUV): within a 10-bit PQ step; progress on stderr only
    ll = measure_light_level(to_hdr10(src))
    assert ll.max_cll == pytest.approx(609, rel=0.01) and ll.max_fall == pytest.approx(fall, rel=0.01)
    out = capsys.readouterr()
    assert out.out == "" and "3/3 frames" in out.err
    # the bright pixels past the roll-off's knee are measured as written, below the peak
    hot = measure_light_level(to_hdr10(src[0], peak=400, format=vs.RGBS), progress=False)
    assert 300 < hot.max_cll < 400


def test_measure_light_level_bad_input():
    with pytest.raises(vs.Error, match="_Transfer=16"):
        measure_light_level(flat(1.0), progress=False)            # linear, not PQ
    with pytest.raises(vs.Error, match="_Matrix"):
        measure_light_level(core.std.BlankClip(format=vs.YUV420P10, width=8, height=8, length=1).std.SetFrameProps(
            _Transfer=16), progress=False)
    with pytest.raises(vs.Error, match="YUV or RGB"):
        measure_light_level(core.std.BlankClip(format=vs.GRAY16), progress=False)


def test_hlg_reference_white_is_75_percent():
    y, u, v = planes(to_hlg(flat(1.0)))
    assert np.all(y == code10(0.75)) and np.all(u == 512)
    p = to_hlg(flat(1.0)).get_frame(0).props
    assert p["_Transfer"] == 18 and p["_Primaries"] == 9 and p["_Matrix"] == 9


def test_bad_input_format():
    with pytest.raises(vs.Error, match="RGBS or RGBH"):
        to_hdr10(core.std.BlankClip(format=vs.YUV420P8))
    with pytest.raises(vs.Error, match="RGBS or RGBH"):
        to_hdr10(core.std.BlankClip(format=vs.RGB24))


def test_encoder_args():
    x = hdr10_x265_args(1000, 1000, 400)
    s = " ".join(x)
    for part in ["--output-depth 10", "--hdr10", "--hdr10-opt", "--repeat-headers", "--colorprim bt2020",
                 "--transfer smpte2084", "--colormatrix bt2020nc", "--range limited", "--max-cll 1000,400"]:
        assert part in s
    assert x[x.index("--master-display") + 1] == "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1)"
    assert "G(8500,39850)B(6550,2300)R(35400,14600)" in " ".join(hdr10_x265_args(4000, mastering_display="bt2020"))
    assert "L(40000000,1)" in " ".join(hdr10_x265_args(4000))
    f = hdr10_ffmpeg_args(1000, 1000, 400)
    assert f[f.index("-pix_fmt") + 1] == "yuv420p10le" and f[f.index("-color_trc") + 1] == "smpte2084"
    assert f[f.index("-colorspace") + 1] == "bt2020nc" and f[f.index("-color_range") + 1] == "tv"
    params = f[f.index("-x265-params") + 1]
    assert "hdr10=1" in params and "repeat-headers=1" in params and "max-cll=1000,400" in params
    assert "master-display=G(13250,34500)" in params
    assert "arib-std-b67" in hlg_x265_args()


# ---------------------------------------------------------------- end to end: vspipe | x265 | ffprobe

def _vspipe() -> str:
    exe = Path(sys.executable).with_name("vspipe")
    exe = str(exe) if exe.exists() else shutil.which("vspipe")
    if not exe:
        pytest.fail("vspipe not found next to the Python executable or on PATH (pip install vapoursynth)")
    if subprocess.run([exe, "--version"], capture_output=True).returncode != 0:
        # The wheel's vspipe needs `vapoursynth config` once per Python installation.
        tool = Path(sys.executable).with_name("vapoursynth")
        cmd = [str(tool)] if tool.exists() else [sys.executable, "-m", "vapoursynth"]
        subprocess.run(cmd + ["config"], capture_output=True, check=False)
        res = subprocess.run([exe, "--version"], capture_output=True, text=True)
        if res.returncode != 0:
            pytest.fail(f"vspipe does not start even after `vapoursynth config`: {res.stdout}{res.stderr}")
    return exe


SCRIPT = """
import numpy as np
import vapoursynth as vs
from vsvitm.hdr import to_hdr10
core = vs.core
w, h = 64, 64  # x265 refuses frames smaller than 64x64
ramp = np.linspace(0.0, 8.0, w, dtype=np.float32)          # 0 .. 8x SDR white
tint = np.float32([1.0, 0.8, 0.6])
blank = core.std.BlankClip(format=vs.RGBS, width=w, height=h, length=3, fpsnum=24)
def fill(n, f):
    out = f.copy()
    for p in range(3):
        np.copyto(np.asarray(out[p]), np.broadcast_to(ramp * tint[p] * (1 + 0.1 * n), (h, w)))
    return out
to_hdr10(core.std.ModifyFrame(blank, blank, fill), sdr_white=203, peak=1000, max_fall=400).set_output()
"""


def _ffmpeg_has_libx265() -> bool:
    if not shutil.which("ffmpeg"):
        return False
    res = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True)
    return "libx265" in res.stdout


@pytest.mark.parametrize("encoder", ["x265", "ffmpeg"])
def test_end_to_end_hdr10_encode(tmp_path, encoder):
    if not shutil.which("ffprobe"):
        pytest.skip("ffprobe not installed (apt-get install -y ffmpeg)")
    if encoder == "x265" and not shutil.which("x265"):
        pytest.skip("x265 not installed (apt-get install -y x265)")
    if encoder == "ffmpeg" and not _ffmpeg_has_libx265():
        pytest.skip("ffmpeg with libx265 not installed (apt-get install -y ffmpeg)")
    vspipe = _vspipe()
    script = tmp_path / "hdr.vpy"
    script.write_text(textwrap.dedent(SCRIPT))
    # first pass: MaxCLL/MaxFALL of the script's output, measured in this process
    import runpy
    vs.clear_outputs()
    runpy.run_path(str(script), run_name="__vapoursynth__")
    light = measure_light_level(getattr(vs.get_output(0), "clip", vs.get_output(0)), progress=False)
    vs.clear_outputs()
    cll, fall = round(light.max_cll), round(light.max_fall)
    assert 800 < cll < 1000 and 0 < fall < cll   # the ramp's top rolls off below the peak
    out = tmp_path / "out.hevc"
    if encoder == "x265":
        enc = ["x265", "--y4m", "--input", "-", "--preset", "ultrafast", "--frame-threads", "1", "--pools", "1",
               *hdr10_x265_args(1000, cll, fall), "-o", str(out)]
    else:
        enc = ["ffmpeg", "-v", "error", "-y", "-f", "yuv4mpegpipe", "-i", "-",
               *hdr10_ffmpeg_args(1000, cll, fall), str(out)]
    src = subprocess.Popen([vspipe, "-c", "y4m", str(script), "-"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    enc_res = subprocess.run(enc, stdin=src.stdout, capture_output=True, text=True, timeout=120)
    src.stdout.close()
    vs_err = src.stderr.read().decode(errors="replace")
    assert src.wait(timeout=60) == 0, vs_err
    assert enc_res.returncode == 0, enc_res.stderr
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-show_frames", "-read_intervals", "%+#1",
                            "-of", "json", str(out)], capture_output=True, text=True, check=True)
    info = json.loads(probe.stdout)
    st = info["streams"][0]
    assert st["codec_name"] == "hevc" and st["pix_fmt"] == "yuv420p10le"
    assert st["color_transfer"] == "smpte2084" and st["color_primaries"] == "bt2020"
    assert st["color_space"] == "bt2020nc" and st["color_range"] == "tv"
    side = {d["side_data_type"]: d for d in info["frames"][0].get("side_data_list", [])}
    md = side["Mastering display metadata"]
    assert md["max_luminance"] == "10000000/10000" and md["red_x"] == "34000/50000"
    sei = side["Content light level metadata"]
    # the stream carries the measured values (within 1 cd/m²)
    assert abs(sei["max_content"] - light.max_cll) <= 1 and abs(sei["max_average"] - light.max_fall) <= 1
