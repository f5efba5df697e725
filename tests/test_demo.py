"""scripts/demo.py's first picture makes the point on the shipped sample: where the pushed sample clips,
the default ITM differs visibly from f^-1(L) (and the committed copy in docs/ does too)."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "london_pan_320x240.mp4"


def test_differing_share_counts_pixels_past_one_percent():
    demo = load_script("demo")
    a = np.zeros((2, 2, 3), np.uint8)
    b = a.copy()
    b[0, 0, 1] = 3            # 3/255 > 1 %
    b[0, 1, 2] = 2            # 2/255 < 1 %
    assert demo.differing_share(a, b) == 0.25


def test_first_picture_shows_what_itm_recovers(tmp_path):
    """The demo's first picture at its frame (15: the swing's top, 2.5 stops): over 1 % of the pixels of
    the f^-1(L) and default panels differ by more than 1 %, and the default is nearer the unclipped
    source than f^-1(L) where the push clipped."""
    vs = pytest.importorskip("vapoursynth")
    if not hasattr(vs.core, "bs"):
        pytest.skip("needs the BestSource plugin (pip install vapoursynth-bestsource, scripts/setup.sh)")
    from vsvitm.colour import to_display_rgb
    demo = load_script("demo")
    clip = vs.core.bs.VideoSource(str(SAMPLE))
    panels = demo.point_panels(clip, to_display_rgb(clip), frames=120, n=15)
    view = panels["view"]
    assert list(view) == ["f^-1(L)", "single frame", "vsvitm.ITM", "source"]
    assert all(v.shape == (240, 320, 3) for v in view.values())
    assert panels["mask"].mean() > 0.2                     # the push really clips a sky the source did not
    assert demo.differing_share(view["f^-1(L)"], view["vsvitm.ITM"]) > 0.01
    lin, m = panels["lin"], panels["mask"]

    def err(x):
        return float(np.mean(np.abs(np.log2(x[m] + 1e-4) - np.log2(lin["source"][m] + 1e-4))))
    assert err(lin["vsvitm.ITM"]) < err(lin["f^-1(L)"])
    line = demo.point_picture(panels, tmp_path / "p.png")
    assert "frame 15" in line and cv2.imread(str(tmp_path / "p.png")).shape == (22 + 22 + 240, 4 * 320, 3)


def test_committed_picture_differs_between_f_inverse_and_itm():
    """docs/demo_side_by_side.png (README's first picture): 4 labelled 320-px panels under a title bar."""
    img = cv2.imread(str(ROOT / "docs" / "demo_side_by_side.png"))
    assert img is not None and img.shape == (284, 1280, 3)
    panels = [img[44:, 320 * i: 320 * (i + 1)] for i in range(4)]
    demo = load_script("demo")
    assert demo.differing_share(panels[0], panels[2]) > 0.01
    assert demo.differing_share(panels[2], panels[3]) < demo.differing_share(panels[0], panels[3])


def test_demo_pushed_clip_swings_exposure_and_clips_like_a_camera():
    """scripts/demo.py's recovery sheet: the sample brightened by a slow exposure swing (push_stops), in
    linear light, clipped at 1.0 and rounded to 8 bits, so highlights clip in some frames only."""
    vs = pytest.importorskip("vapoursynth")
    demo = load_script("demo")
    core = vs.core
    assert demo.push_stops(0) == pytest.approx(1.5) and demo.push_stops(15) == pytest.approx(2.5)
    assert demo.push_stops(45) == pytest.approx(0.5)
    grey = core.std.BlankClip(width=8, height=4, format=vs.RGBS, length=60, color=[0.5, 0.25, 0.1])
    ldr = demo.pushed_clip(core, grey)
    assert ldr.format.id == vs.RGB24
    for n in (0, 15, 45):
        got = np.asarray(ldr.get_frame(n)[0])[0, 0], np.asarray(ldr.get_frame(n)[2])[0, 0]
        want = [min(1.0, c * 2 ** (demo.push_stops(n) / 2.2)) for c in (0.5, 0.1)]
        assert got == (round(want[0] * 255), round(want[1] * 255))
    assert np.asarray(ldr.get_frame(15)[0])[0, 0] == 255 and np.asarray(ldr.get_frame(45)[0])[0, 0] < 255
