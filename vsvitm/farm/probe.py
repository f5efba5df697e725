"""What a script is before it is rendered: vspipe --info, the media it reads, what each node can see."""
from __future__ import annotations

import ast
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from .common import ClipInfo, FarmError, vspipe_exe


def _eval_error(stderr: str) -> str:
    """The one line of vspipe's stderr that says why a script did not evaluate."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.startswith("Warning:")]
    for prefix in ("Python exception:", "vapoursynth.Error:"):
        for ln in lines:
            if ln.startswith(prefix):
                return ln[len(prefix):].strip()
    if "File reading exception:" in lines and lines.index("File reading exception:") + 1 < len(lines):
        return lines[lines.index("File reading exception:") + 1]
    return lines[-1] if lines else "vspipe failed without a message"


def probe(script: Path, vs_args: list[str], cwd: str | None = None) -> tuple[ClipInfo, float]:
    """Evaluate the script once with ``vspipe --info``: its output's size, length and format, and
    how long the evaluation took (what every segment pays before its first frame).

    script: the .vpy file.
    vs_args: ``key=value`` arguments passed to the script (vspipe ``-a``).
    cwd: directory to evaluate it in (the current one for None).
    """
    if not script.is_file():
        raise FarmError(f"script not found: {script}")
    cmd = [vspipe_exe(), "--info"] + [a for kv in vs_args for a in ("-a", kv)] + [str(script), "-"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    seconds = time.perf_counter() - t0
    if r.returncode != 0:
        raise FarmError(f"{script} does not evaluate: {_eval_error(r.stderr)}")
    fields = dict(ln.split(":", 1) for ln in r.stdout.splitlines() if ":" in ln)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    try:
        num, _, den = fields["FPS"].split()[0].partition("/")
        info = ClipInfo(int(fields["Frames"]), int(fields["Width"]), int(fields["Height"]), int(num),
                        int(den or 1), fields["Format Name"], fields["Color Family"])
    except (KeyError, ValueError):
        raise FarmError(f"{script}: output 0 must be a video clip of constant size, format and frame rate "
                        f"(vspipe --info said: {' '.join(r.stdout.split())[:200]})") from None
    if info.color_family not in ("YUV", "Gray"):
        raise FarmError(f"{script}: y4m needs YUV or Gray output, the script outputs {info.format} "
                        f"(end it with vsvitm.to_hdr10(vsvitm.ITM(clip)).set_output())")
    return info, seconds


def source_paths(script: Path, vs_args: list[str], cwd: str) -> list[str]:
    """The files a script names: string literals in it and ``-a`` values that are existing files
    (resolved against ``cwd``), as absolute paths; what every node must see at the same path.

    script: the .vpy file.
    vs_args: ``key=value`` arguments passed to the script.
    cwd: the directory relative paths are resolved against.
    """
    names = [kv.partition("=")[2] for kv in vs_args]
    try:
        tree = ast.parse(script.read_text(encoding="utf-8", errors="replace"))
        names += [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    except SyntaxError:
        pass
    out = []
    for name in names:
        if not name or "\n" in name or len(name) > 4096:
            continue
        p = Path(name) if os.path.isabs(name) else Path(cwd) / name
        try:
            if p.is_file() and str(p.resolve()) not in out:
                out.append(str(p.resolve()))
        except OSError:
            continue
    return out


def check_node(paths: list[str], tools: list[str]) -> dict:
    """What a node lacks: which of ``paths`` do not exist there and which ``tools`` it cannot run.

    paths: files and directories the node must see (script, source media, work directory).
    tools: executables the segments need (vspipe, x265).
    """
    missing = [p for p in paths if not os.path.exists(p)]
    lacking = []
    for tool in tools:
        if tool == "vspipe":
            try:
                vspipe_exe()
            except FarmError:
                lacking.append(tool)
        elif not (shutil.which(tool) or os.access(tool, os.X_OK)):
            lacking.append(tool)
    return {"host": socket.gethostname(), "missing": missing, "tools": lacking}
