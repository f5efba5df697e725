"""One segment's render (a Ray task on any node): vspipe into x265, ffmpeg or a y4m file, checked,
hashed and renamed into place."""
from __future__ import annotations

import ctypes
import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections import deque
from pathlib import Path

from .common import FAULT_ENV, SEGMENT_EXT, STDERR_LINES, SegmentError, sha256_file, vspipe_exe
from .join import y4m_layout


def _die_with_parent():
    """preexec_fn: the child gets SIGKILL when the worker that started it dies (Linux)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _fault(job: dict, idx: int) -> str | None:
    """The injected fault for this attempt of segment idx (tests only; see the module docstring)."""
    spec = job.get("fault")
    if not spec:
        return None
    seg, _, mode = spec.partition(":")
    if not seg.strip().isdigit() or int(seg) != idx:
        return None
    mode = mode or "once"
    if mode == "always":
        return "fail"
    marker = Path(job["work_dir"]) / f".fault_{idx:05d}"
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.close(fd)
    except FileExistsError:
        return None
    return "kill" if mode == "kill" else "fail"


class _Tail:
    """Reads a child's stderr: keeps the last lines and reports vspipe's progress."""
    FRAME = re.compile(r"Frame:\s*(\d+)/(\d+)")

    def __init__(self, stream, on_frame=None, keep: int = 200):
        self.lines: deque[str] = deque(maxlen=keep)
        self.stream, self.on_frame = stream, on_frame
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        buf = b""
        while True:
            chunk = self.stream.read1(65536) if hasattr(self.stream, "read1") else self.stream.read(65536)
            if not chunk:
                break
            buf += chunk
            parts = re.split(rb"[\r\n]", buf)
            buf = parts.pop()
            for p in parts:
                self._line(p.decode(errors="replace"))
        if buf:
            self._line(buf.decode(errors="replace"))

    def _line(self, text: str):
        text = text.rstrip()
        if not text:
            return
        m = self.FRAME.search(text)
        if m:
            if self.on_frame:
                self.on_frame(int(m.group(1)))
            return
        self.lines.append(text)


def render_segment(job: dict, idx: int, start: int, end: int, progress=None) -> dict:
    """Render frames [start, end) of the job's script into the work directory as ``seg_IDX``
    (y4m with --raw, an HEVC elementary stream from the x265 CLI, or NUT from ffmpeg's libx265),
    under a temporary name renamed when complete. Runs as a Ray task on any node.

    job: the run's settings (script, vs_args, work_dir, cwd, encoder, tool, enc_args, fault).
    idx: the segment's index.
    start: its first frame.
    end: one past its last frame.
    progress: a Progress actor to report frames done to, or None.
    Returns the manifest entry: range, file name, SHA-256, size, node and seconds.
    """
    t0 = time.perf_counter()
    work = Path(job["work_dir"])
    ext = SEGMENT_EXT[job["encoder"]]
    final = work / f"seg_{idx:05d}.{ext}"
    tmp = work / f".seg_{idx:05d}.{ext}.{uuid.uuid4().hex[:8]}.tmp"
    host = socket.gethostname()
    fault = _fault(job, idx)
    last = [0.0]

    def on_frame(done: int):
        now = time.monotonic()
        if progress is not None and (now - last[0] > 0.5 or done >= end - start):
            last[0] = now
            progress.report.remote(idx, host, done)

    codes, tails = _pipeline(job, start, end, tmp, on_frame)
    _check_output(job, idx, start, end, tmp, codes, tails, fault)
    digest = sha256_file(tmp)
    size = tmp.stat().st_size
    os.replace(tmp, final)
    return {"start": start, "end": end, "file": final.name, "sha256": digest, "bytes": size,
            "node": host, "seconds": round(time.perf_counter() - t0, 3)}


def _pipeline(job: dict, start: int, end: int, tmp: Path, on_frame) -> tuple[list[int], list[_Tail]]:
    """vspipe's frames [start, end) into `tmp` (y4m), or through the encoder into it; waits for the
    processes (killed, and `tmp` removed, on any exception). Returns their exit codes and stderr tails."""
    vs_cmd = ([vspipe_exe(), "-c", "y4m", "-p", "-s", str(start), "-e", str(end - 1)]
              + [a for kv in job["vs_args"] for a in ("-a", kv)] + [job["script"], "-"])
    cwd = job["cwd"] if os.path.isdir(job["cwd"]) else None
    procs, tails = [], []
    try:
        if job["encoder"] == "raw":
            with open(tmp, "wb") as fh:
                vsp = subprocess.Popen(vs_cmd, stdout=fh, stderr=subprocess.PIPE, cwd=cwd,
                                       preexec_fn=_die_with_parent)
            procs.append(vsp)
            tails.append(_Tail(vsp.stderr, on_frame))
        else:
            vsp = subprocess.Popen(vs_cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
                                   preexec_fn=_die_with_parent)
            if job["encoder"] == "x265":
                enc_cmd = [job["tool"], "--y4m", "--input", "-", "--output", str(tmp)] + job["enc_args"]
            else:
                enc_cmd = ([job["tool"], "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "yuv4mpegpipe",
                            "-i", "-"] + job["enc_args"] + ["-f", "nut", str(tmp)])
            enc = subprocess.Popen(enc_cmd, stdin=vsp.stdout, stderr=subprocess.PIPE, cwd=cwd,
                                   preexec_fn=_die_with_parent)
            vsp.stdout.close()
            procs += [vsp, enc]
            tails += [_Tail(vsp.stderr, on_frame), _Tail(enc.stderr)]
        codes = [p.wait() for p in procs]
        for t in tails:
            t.thread.join(5)
    except BaseException:
        for p in procs:
            if p.poll() is None:
                p.kill()
        tmp.unlink(missing_ok=True)
        raise
    return codes, tails


def _check_output(job: dict, idx: int, start: int, end: int, tmp: Path, codes: list[int], tails: list[_Tail],
                  fault: str | None) -> None:
    """A SegmentError (with the stderr tail) unless every process succeeded and `tmp` holds the segment's
    frames; injected faults (tests) act here."""
    tail = [ln for t in tails for ln in t.lines][-STDERR_LINES:]
    frames = end - start
    try:
        if any(codes):
            names = ["vspipe", "x265" if job["encoder"] == "x265" else "ffmpeg"]
            bad = ", ".join(f"{names[i]} exited with {c}" for i, c in enumerate(codes) if c)
            raise SegmentError(idx, start, end, bad, tail)
        if job["encoder"] == "raw":
            header_len, frame_bytes = y4m_layout(tmp)
            want = header_len + frames * (6 + frame_bytes)
            if tmp.stat().st_size != want:
                raise SegmentError(idx, start, end, f"y4m has {tmp.stat().st_size} bytes, {want} expected", tail)
        else:
            got = [int(m.group(1)) for ln in tails[1].lines for m in [re.search(r"encoded (\d+) frames", ln)] if m]
            if not got or got[-1] != frames:
                raise SegmentError(idx, start, end, f"x265 encoded {got[-1] if got else 'no'} frames, "
                                                    f"{frames} expected", tail)
        if fault == "fail":
            with open(tmp, "r+b") as fh:               # what a crash mid-write leaves behind
                fh.truncate(tmp.stat().st_size // 2)
            raise SegmentError(idx, start, end, f"injected fault ({FAULT_ENV})", tail + ["injected fault"])
        if fault == "kill":
            os._exit(17)                               # the worker process dies mid-segment
    except SegmentError:
        if fault != "fail":      # the injected fault leaves its half file, as a crash would
            tmp.unlink(missing_ok=True)
        raise
