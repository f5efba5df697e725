#!/usr/bin/env python3
"""vspreview on scripts/demo.vpy under a headless X server: seek to a frame, take a screenshot, and check
that the previewer shows that frame.

    python scripts/preview_screenshot.py [--frame 30] [--output 0] [--out docs/vspreview.png] [--timeout 300]

Starts Xvfb, opens vspreview (`vspreview -c -f FRAME demo.vpy src=...`; output 0 is the HDR10 signal,
--output 1 the SDR view of the linear output, put first in a copy of the script since vspreview opens
on its first output) and waits until its window shows the frame: the output's frame, converted to 8-bit
RGB as vspreview converts it, must match a region of the screen (normalised cross-correlation >= 0.95)
better than frame 0 of the same output does. Writes the window's screenshot to --out and exits 0, or 1 with what it saw.
Needs vspreview (`pip install -e .[preview]`, part of `scripts/setup.sh --dev`) and Xvfb with the
libraries Qt's xcb platform loads (Debian/Ubuntu: apt-get install xvfb libxcb-cursor0
libxkbcommon-x11-0 libegl1 libgl1 libfontconfig1 libdbus-1-3 libxcb-icccm4 libxcb-keysyms1
libxcb-shape0 libxcb-render-util0 libxcb-image0 libxcb-xkb1 libxcb-randr0 libxcb-xinerama0).
"""
from __future__ import annotations

import argparse
import os
import runpy
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCREEN = (1600, 900)


def free_display() -> int:
    for n in range(90, 200):
        if not Path(f"/tmp/.X{n}-lock").exists() and not Path(f"/tmp/.X11-unix/X{n}").exists():
            return n
    raise SystemExit("preview_screenshot: no free X display number between :90 and :199")


def start_xvfb() -> tuple[subprocess.Popen, str]:
    xvfb = shutil.which("Xvfb")
    if not xvfb:
        raise SystemExit("preview_screenshot: Xvfb not found (Debian/Ubuntu: apt-get install xvfb; see --help "
                         "for the libraries Qt needs)")
    n = free_display()
    proc = subprocess.Popen([xvfb, f":{n}", "-screen", "0", f"{SCREEN[0]}x{SCREEN[1]}x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        if Path(f"/tmp/.X11-unix/X{n}").exists():
            return proc, f":{n}"
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"preview_screenshot: Xvfb did not start on :{n}")


def expected_views(script: Path, src: str, output: int, frames: list[int]) -> list[np.ndarray]:
    """The output's frames as vspreview shows them on an sRGB screen (BGR, 8-bit): BT.2020 outputs (the
    HDR10 signal) with their code values as they are, others converted to BT.709 through their props."""
    import vapoursynth as vs
    vs.clear_outputs()
    runpy.run_path(str(script), init_globals={"src": src}, run_name="__vapoursynth__")
    out = vs.get_output(output)
    clip = getattr(out, "clip", out)
    props = clip.get_frame(frames[0]).props
    kw = {}
    if props.get("_Primaries") != vs.PRIMARIES_BT2020:
        kw = {"transfer": vs.TRANSFER_BT709, "primaries": vs.PRIMARIES_BT709}
    rgb = vs.core.resize.Bicubic(clip, format=vs.RGB24, dither_type="none", **kw)
    views = []
    for n in frames:
        f = rgb.get_frame(n)
        views.append(cv2.merge([np.asarray(f[p]) for p in (2, 1, 0)]))
    vs.clear_outputs()
    return views


def grab(app) -> np.ndarray:
    """The whole X screen as BGR."""
    from PyQt6.QtGui import QImage
    img = app.primaryScreen().grabWindow(0).toImage().convertToFormat(QImage.Format.Format_RGB888)
    h, w = img.height(), img.width()
    ptr = img.constBits()
    ptr.setsize(img.sizeInBytes())
    a = np.frombuffer(ptr, np.uint8).reshape(h, img.bytesPerLine())[:, : w * 3].reshape(h, w, 3)
    return cv2.cvtColor(a, cv2.COLOR_RGB2BGR)


def match(screen: np.ndarray, view: np.ndarray) -> tuple[float, tuple[int, int]]:
    res = cv2.matchTemplate(screen, view, cv2.TM_CCOEFF_NORMED)
    _, best, _, at = cv2.minMaxLoc(res)
    return float(best), at


def window_box(screen: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box of what is not the X server's black background."""
    ys, xs = np.nonzero(screen.max(-1) > 8)
    if not len(xs):
        return 0, 0, screen.shape[1], screen.shape[0]
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frame", type=int, default=30)
    ap.add_argument("--output", type=int, default=0, choices=(0, 1), help="demo.vpy's output to show")
    ap.add_argument("--src", default=str(ROOT / "samples" / "london_pan_320x240.mp4"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "vspreview.png"))
    ap.add_argument("--timeout", type=float, default=300, help="seconds to wait for the frame on screen")
    a = ap.parse_args(argv)
    if a.frame <= 0:
        ap.error("--frame must be above 0 (frame 0 is what the previewer shows before it seeks)")
    vspreview = shutil.which("vspreview", path=str(Path(sys.executable).parent)) or shutil.which("vspreview")
    if not vspreview:
        raise SystemExit("preview_screenshot: vspreview not found (pip install -e '.[preview]' or scripts/setup.sh --dev)")
    src = str(Path(a.src).resolve())
    with tempfile.TemporaryDirectory(prefix="vsvitm-preview-") as tmp:
        # a copy: vspreview keeps its settings in .vsjet/ next to the script
        script = Path(tmp) / "demo.vpy"
        text = (ROOT / "scripts" / "demo.vpy").read_text()
        if a.output:
            text += (f"\n_shown = vs.get_output({a.output})\nvs.clear_outputs()\n"
                     f"getattr(_shown, 'clip', _shown).set_output(0)\n")
        script.write_text(text)
        t0 = time.time()
        want, other = expected_views(script, src, 0, [a.frame, 0])
        print(f"rendered frames {a.frame} and 0 of output {a.output} for the check in {time.time() - t0:.1f} s",
              file=sys.stderr)
        xvfb, display = start_xvfb()
        env = dict(os.environ, DISPLAY=display, QT_QPA_PLATFORM="xcb")
        cmd = [vspreview, "-c", "-f", str(a.frame), str(script), f"src={src}"]
        print("$", " ".join(cmd), f"(DISPLAY={display})", file=sys.stderr)
        log = open(Path(tmp) / "vspreview.log", "w")
        viewer = subprocess.Popen(cmd, env=env, cwd=tmp, stdout=log, stderr=subprocess.STDOUT)
        try:
            os.environ["DISPLAY"], os.environ["QT_QPA_PLATFORM"] = display, "xcb"
            from PyQt6.QtGui import QGuiApplication
            app = QGuiApplication([])
            t0, seen = time.time(), (0.0, 0.0)
            ok = False
            while time.time() - t0 < a.timeout:
                time.sleep(2)
                if viewer.poll() is not None:
                    break
                screen = grab(app)
                (s_want, at), (s_other, _) = match(screen, want), match(screen, other)
                seen = (s_want, s_other)
                if s_want >= 0.95 and s_want > s_other + 0.02:
                    time.sleep(3)   # let the status bar and the frame props panel settle
                    screen = grab(app)
                    ok = True
                    break
            else:
                screen = grab(app)
            x0, y0, x1, y1 = window_box(screen)
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(a.out, screen[y0:y1, x0:x1])
        finally:
            viewer.terminate()
            try:
                viewer.wait(10)
            except subprocess.TimeoutExpired:
                viewer.kill()
            xvfb.terminate()
            xvfb.wait(10)
            log.close()
        took = time.time() - t0
        if not ok:
            tail = (Path(tmp) / "vspreview.log").read_text(errors="replace")[-2000:]
            print(f"preview_screenshot: after {took:.0f} s the screen matched frame {a.frame} at {seen[0]:.3f} and "
                  f"frame 0 at {seen[1]:.3f} (need >= 0.95 and above frame 0's); screenshot in {a.out}; "
                  f"vspreview said:\n{tail}", file=sys.stderr)
            return 1
    print(f"wrote {a.out}: vspreview shows frame {a.frame} of output {a.output} at ({at[0] - x0}, {at[1] - y0}) in its "
          f"window (match {seen[0]:.3f}; frame 0: {seen[1]:.3f}), {took:.0f} s after it started")
    return 0


if __name__ == "__main__":
    sys.exit(main())
