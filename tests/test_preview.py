"""The plugin inside a real previewer: scripts/preview_screenshot.py opens scripts/demo.vpy in vspreview
under Xvfb, seeks to a frame and checks the screen shows it (slow: minutes on a 2-core CPU)."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_vspreview_shows_the_frame(tmp_path):
    if not shutil.which("Xvfb"):
        pytest.skip("Xvfb not installed (apt-get install xvfb; scripts/preview_screenshot.py --help)")
    if not (shutil.which("vspreview", path=str(Path(sys.executable).parent)) or shutil.which("vspreview")):
        pytest.skip("vspreview not installed (pip install -e '.[preview]')")
    shot = tmp_path / "shot.png"
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "preview_screenshot.py"), "--frame", "12",
                          "--out", str(shot), "--timeout", "240"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "vspreview shows frame 12" in res.stdout and shot.stat().st_size > 10_000
