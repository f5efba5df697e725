"""vsvitm-farm: render a VapourSynth script in segments on a Ray cluster, then join the segments.

    vsvitm-farm SCRIPT.vpy -o OUT.mkv [--segment 1920] [--address auto|HOST:PORT] [--workers N]
                [--x265 "extra x265 args"] [--raw] [--resume] [--work-dir DIR] [--dry-run]

A frame of ``vsvitm.ITM`` depends only on its number, the clip and the scene cuts near it, so
segments rendered anywhere join exactly. The farm splits [0, N) into segments aligned to the FCPM
chunk grid (``vsvitm.itm.chunk_and_margin``); each segment is one Ray task that runs
``vspipe -c y4m --start/--end`` into x265 with the HDR10 flags of ``vsvitm.hdr``, or, with
``--raw``, keeps the y4m bytes. A segment file is written under a temporary name and renamed; the
manifest in the work directory holds its frame range and SHA-256, and ``--resume`` skips the
segments it lists whose file still has that hash. Ray retries a failed task; a segment that fails
MAX_ATTEMPTS times stops the run with its range and the last lines of its stderr.

Joins: a ``.hevc`` output is the x265 CLI's elementary streams (``hdr10_x265_args``) concatenated
(each segment starts with an IDR and its parameter sets). A container output (.mkv, .mp4, .mov)
takes segments that ffmpeg's libx265 encodes with ``hdr10_ffmpeg_args`` into NUT files, joined by
ffmpeg's concat demuxer without re-encoding: ffmpeg 5's raw HEVC demuxer gives no presentation
times, so an elementary stream with B-frames cannot be muxed with correct ones. The colour
description is in the container and the stream; the mastering display and content light level in
the stream's SEI. ``--raw`` concatenates the y4m frames under one header.

Without ``--address`` a local Ray instance starts; with it, the farm joins a cluster made with
``ray start --head`` / ``ray start --address=HEAD:PORT``. The script, its source media and the work
directory must be at the same path on every node (a shared mount): the farm checks that on each
node before it renders.

Fault injection, for the tests only: ``VSVITM_FARM_FAULT="SEG[:MODE]"`` makes segment SEG fail.
MODE ``once`` (default): its first attempt leaves half a temporary file and raises; ``always``:
every attempt does; ``kill``: its first attempt kills the Ray worker process (a worker lost
mid-segment). Attempts are counted with marker files in the work directory.
"""
from __future__ import annotations

import argparse
import ast
import ctypes
import hashlib
import json
import math
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path

PROG = "vsvitm-farm"
DEFAULT_SEGMENT = 1920      # frames; a multiple of both chunk sizes (24 and 12): planned overhead 1.4 %
MAX_ATTEMPTS = 3            # a segment that fails this many times stops the run
STDERR_LINES = 20           # lines of a failed segment's stderr in the error message
FAULT_ENV = "VSVITM_FARM_FAULT"
PLAN_MODES = ("temporal", "full", "icam", "linear")   # ITM's modes; the first is its default
# mode "full": shares of one output frame's work in a whole render (512x512 on the CPU, per output
# frame: ICAM reference steps 878 ms, merge 346 ms of about 1.9 s). A key frame's ICAM is
# key_stride frames' ICAM share.
ICAM_SHARE = 0.46
MERGE_SHARE = 0.18
STEP_SHARE = 0.36 / 1.25    # one recurrence step (both directions and the fuse) at 1.25 steps per frame
# mode "temporal": one key frame's radiance map (its single-frame ICAM, ICAM with its references,
# the pre-flows to them) in output frames of a whole render, an upper value: at 512x512 on a 2-core
# CPU, a segment alone costs 1.5-7.7 frames' time beyond its frames and the script's start, for the
# two key maps beyond its edges (scripts/farm_benchmark.py; BENCHMARKS.md, "Render farm")
KEY_MAP_SHARE = 4.0
MANIFEST = "manifest.json"
STREAM_EXT = (".hevc", ".265", ".h265")       # outputs that are the x265 CLI's elementary stream
SEGMENT_EXT = {"raw": "y4m", "x265": "hevc", "ffmpeg": "nut"}


class FarmError(Exception):
    """An error the farm reports as one line, with the exit status ``status``."""

    def __init__(self, message: str, status: int = 2):
        super().__init__(message)
        self.status = status


class SegmentError(RuntimeError):
    """A segment whose render failed: its index, frame range [start, end) and stderr tail."""

    def __init__(self, idx: int, start: int, end: int, reason: str, tail: list[str]):
        super().__init__(f"segment {idx} (frames {start}-{end - 1}): {reason}")
        self.idx, self.start, self.end, self.reason, self.tail = idx, start, end, reason, list(tail)

    def __reduce__(self):
        return SegmentError, (self.idx, self.start, self.end, self.reason, self.tail)


@dataclass(frozen=True)
class ClipInfo:
    """What ``vspipe --info`` says about a script's output 0."""
    frames: int
    width: int
    height: int
    fps_num: int
    fps_den: int
    format: str
    color_family: str


# ----------------------------------------------------------------------------------------------
# tools


def vspipe_exe() -> str:
    """The vspipe beside this Python (the wheel's), else the one on PATH."""
    here = Path(sys.executable).with_name("vspipe")
    if here.exists():
        return str(here)
    found = shutil.which("vspipe")
    if not found:
        raise FarmError("vspipe not found (install VapourSynth into this environment: scripts/setup.sh)")
    return found


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


# ----------------------------------------------------------------------------------------------
# plan


def plan_segments(num_frames: int, segment: int, chunk: int) -> list[tuple[int, int]]:
    """[start, end) of each segment: ``segment`` rounded up to a multiple of the FCPM chunk, so
    every recurrence chunk lies inside one segment; the last segment takes what is left.

    num_frames: frames in the clip.
    segment: the wanted segment length in frames.
    chunk: the FCPM chunk (``vsvitm.itm.chunk_and_margin``).
    """
    if segment < 1 or chunk < 1:
        raise FarmError(f"--segment must be at least 1 frame, got {segment}")
    length = -(-segment // chunk) * chunk
    return [(s, min(s + length, num_frames)) for s in range(0, num_frames, length)]


def schedule_for(num_frames: int, width: int, height: int, mode: str = "temporal"):
    """The ``vsvitm.schedule.Schedule`` that ``vsvitm.ITM`` uses by default at this size in this mode.

    num_frames: frames in the clip.
    width: the clip's frame width.
    height: the clip's frame height.
    mode: the ITM mode (its default key spacing and references).
    """
    from .itm import KEY_STRIDE, NUM_REFS, chunk_and_margin
    from .schedule import Schedule
    chunk, margin = chunk_and_margin(width, height)
    return Schedule(num_frames, key_stride=KEY_STRIDE.get(mode, 6), num_refs=NUM_REFS.get(mode, 4),
                    chunk=chunk, margin=margin)


def segment_extra(sched, start: int, end: int, mode: str = PLAN_MODES[0]) -> dict:
    """What rendering [start, end) alone computes beyond its own frames, with no scene cuts: merged
    frames outside it (mode full: the FCPM margins of its edge chunks), key frames outside it (full:
    ICAM with references; temporal: radiance maps, the nearest key before and after), recurrence
    steps of chunks it shares with a neighbour (full), and the source frames it reads outside it
    (references and the cut detector's window).

    sched: the Schedule (``schedule_for``).
    start: the segment's first frame.
    end: one past its last frame.
    mode: the ITM mode the script runs (one of PLAN_MODES).
    """
    if mode not in PLAN_MODES:
        raise FarmError(f"mode must be one of {', '.join(PLAN_MODES)}, got {mode!r}")
    n = sched.num_frames
    window = set(range(max(0, start - sched.reach - 2), start)) | set(range(end, min(n, end + sched.reach + 2)))
    if mode == "linear":
        return {"merged": 0, "keys": 0, "steps": 0, "reads": 0}
    if mode in ("icam", "temporal"):
        from .itm import key_weights
        pad = 2 * sched.key_stride + sched.ref_stride * sched.num_refs + sched.reach
        cuts = [c for c in (start - pad, end + pad) if 0 < c < n]
        edge = [t for t in range(start, end) if t < start + sched.key_stride or t >= end - sched.key_stride]
        keys = set()
        if mode == "temporal":
            for t in edge:
                keys.update(k for k, _ in key_weights(t, sched.keys_in(*sched.shot(t, cuts))))
        keys_out = {k for k in keys if not start <= k < end}
        reads = set(window) | keys_out
        reach = sched.ref_stride * sched.num_refs
        for k in list(keys) + [t for t in range(start, end) if t < start + reach or t >= end - reach]:
            if mode == "icam" or k in keys or sched.is_key(k, cuts):
                reads.update(sched.references(k, cuts))
        return {"merged": 0, "keys": len(keys_out), "steps": 0,
                "reads": len({t for t in reads if not start <= t < end})}
    # only frames this near an edge can need anything outside the segment
    near = (sched.fcpm_keys + 1) * sched.key_stride + sched.chunk + sched.margin + 1
    refs_reach = sched.ref_stride * sched.num_refs
    # a shot around the segment that holds everything it reaches: the same answers as the whole
    # clip without cuts, without each call walking the whole clip's key grid
    pad = near + refs_reach + sched.reach + sched.key_stride
    cuts = [c for c in (start - pad, end + pad) if 0 < c < n]
    edge = [t for t in range(start, end) if t < start + near or t >= end - near]
    chunks = {sched.chunk_of(t, cuts) for t in edge}
    merged = set()
    steps_extra = 0
    for cs, ce, rs, re_ in chunks:
        merged.update(range(rs, re_))
        if cs < start or ce > end:           # a chunk cut by the segment edge runs in both segments
            steps_extra += re_ - rs
    keys = set()
    for t in merged:
        if t < start + near or t >= end - near:
            keys.update(sched.nearest_keys(t, cuts))
    keys_out = {k for k in keys if not start <= k < end}
    reads = set(range(max(0, start - sched.reach - 2), start)) | set(range(end, min(n, end + sched.reach + 2)))
    for k in keys:
        reads.update(sched.references(k, cuts))
    keys_in = [k for k in range(start, end) if start + refs_reach > k or k >= end - refs_reach]
    for k in keys_in:
        if k in sched.keys_in(*sched.shot(k, cuts)):
            reads.update(sched.references(k, cuts))
    reads_out = {t for t in reads if not start <= t < end}
    return {"merged": len([t for t in merged if not start <= t < end]), "keys": len(keys_out),
            "steps": steps_extra, "reads": len(reads_out)}


def planned_overhead(sched, start: int, end: int, mode: str = PLAN_MODES[0]) -> float:
    """The extra work of rendering [start, end) alone, as a fraction of its own frames' work in a
    whole render: extra merges, key frames and recurrence steps weighed by their shares of a frame.

    sched: the Schedule (``schedule_for``).
    start: the segment's first frame.
    end: one past its last frame.
    mode: the ITM mode the script runs (one of PLAN_MODES).
    """
    x = segment_extra(sched, start, end, mode)
    if mode == "temporal":
        work = x["keys"] * KEY_MAP_SHARE
    else:
        work = x["merged"] * MERGE_SHARE + x["keys"] * ICAM_SHARE * sched.key_stride + x["steps"] * STEP_SHARE
    return work / max(1, end - start)


def overhead_of_plan(sched, segments: list[tuple[int, int]], mode: str = PLAN_MODES[0]) -> float:
    """Planned overhead of a whole plan: the segments' extra work over all frames' work.

    sched: the Schedule.
    segments: the plan's [start, end) ranges.
    mode: the ITM mode the script runs (one of PLAN_MODES).
    """
    total = sum(planned_overhead(sched, s, e, mode) * (e - s) for s, e in segments)
    return total / max(1, sched.num_frames)


# ----------------------------------------------------------------------------------------------
# worker side


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
    digest = sha256_file(tmp)
    size = tmp.stat().st_size
    os.replace(tmp, final)
    return {"start": start, "end": end, "file": final.name, "sha256": digest, "bytes": size,
            "node": host, "seconds": round(time.perf_counter() - t0, 3)}


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


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, hex.

    path: the file.
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def y4m_layout(path: Path) -> tuple[int, int]:
    """(header length including its newline, bytes of one frame's pixels) of a y4m file.

    path: the file.
    """
    with open(path, "rb") as fh:
        head = fh.read(4096)
    nl = head.find(b"\n")
    if not head.startswith(b"YUV4MPEG2 ") or nl < 0:
        raise ValueError(f"{path} is not y4m")
    tokens = head[:nl].decode().split()[1:]
    w = h = 0
    cs = "420jpeg"
    for tok in tokens:
        if tok[0] == "W":
            w = int(tok[1:])
        elif tok[0] == "H":
            h = int(tok[1:])
        elif tok[0] == "C":
            cs = tok[1:]
    m = re.match(r"(mono|420|422|444)", cs)
    kind = m.group(1) if m else "420"
    b = re.search(r"p(\d+)$", cs)
    bits = int(b.group(1)) if b else 8
    bps = 2 if bits > 8 else 1
    if kind == "mono":
        planes = w * h
    else:
        sub = {"420": (2, 2), "422": (2, 1), "444": (1, 1)}[kind]
        planes = w * h + 2 * (-(-w // sub[0])) * (-(-h // sub[1]))
    return nl + 1, planes * bps


# ----------------------------------------------------------------------------------------------
# joins


def join_raw(files: list[Path], out: Path, num_frames: int) -> None:
    """Concatenate y4m segments under one header (the first segment's, with the whole length).

    files: the segment files in order.
    out: the y4m to write (temporary name, then renamed).
    num_frames: frames in the whole clip (the header's XLENGTH).
    """
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as dst:
            for i, f in enumerate(files):
                hlen, _ = y4m_layout(f)
                with open(f, "rb") as src:
                    header = src.read(hlen)
                    if i == 0:
                        tokens = [t if not t.startswith(b"XLENGTH=") else b"XLENGTH=%d" % num_frames
                                  for t in header.rstrip(b"\n").split(b" ")]
                        dst.write(b" ".join(tokens) + b"\n")
                    shutil.copyfileobj(src, dst, 1 << 22)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def join_hevc(files: list[Path], out: Path) -> None:
    """Concatenate HEVC elementary streams (each starts with an IDR and its parameter sets).

    files: the segment files in order.
    out: the stream to write (temporary name, then renamed).
    """
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as dst:
            for f in files:
                with open(f, "rb") as src:
                    shutil.copyfileobj(src, dst, 1 << 22)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def join_container(files: list[Path], out: Path, ffmpeg: str) -> None:
    """Join NUT segments into OUT's container with ffmpeg's concat demuxer, without re-encoding
    (presentation times carry over; colour description in the container).

    files: the segment files in order.
    out: the file to write (temporary name with the same extension, then renamed).
    ffmpeg: the ffmpeg executable.
    """
    listing = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.txt")
    tmp = out.with_name(f".{out.stem}.{uuid.uuid4().hex[:8]}.partial{out.suffix}")
    try:
        listing.write_text("ffconcat version 1.0\n" + "".join(
            "file '" + str(f).replace("'", "'\\''") + "'\n" for f in files))
        cmd = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0",
               "-i", str(listing), "-map", "0:v", "-c", "copy", "-color_primaries", "bt2020",
               "-color_trc", "smpte2084", "-colorspace", "bt2020nc", "-color_range", "tv", str(tmp)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            msg = (r.stderr.strip().splitlines() or ["no message"])[-1]
            raise FarmError(f"ffmpeg could not mux {out.name}: {msg}", 1)
        os.replace(tmp, out)
    finally:
        listing.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)


def x265_to_ffmpeg(tokens: list[str]) -> tuple[list[str], list[str]]:
    """x265 CLI arguments as ffmpeg libx265 options: (ffmpeg options for preset, tune, crf and qp;
    ``name=value`` entries for -x265-params).

    tokens: the x265 arguments, e.g. ["--preset", "slow", "--crf", "18", "--no-sao"].
    """
    opts, params = [], []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith("--") or len(tok) < 3:
            raise FarmError(f"--x265: expected an option like --crf, got {tok!r}")
        name, eq, value = tok[2:].partition("=")
        if not eq:
            value = None
            if i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
                value, i = tokens[i + 1], i + 1
        if name in ("preset", "tune", "crf", "qp") and value is not None:
            opts += [f"-{name}", value]
        else:
            params.append(f"{name}={1 if value is None else value}")
        i += 1
    return opts, params


# ----------------------------------------------------------------------------------------------
# driver


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise FarmError(message)


def build_parser() -> argparse.ArgumentParser:
    """The command line of vsvitm-farm."""
    p = _Parser(prog=PROG, description="Render a VapourSynth script (e.g. vsvitm.ITM + to_hdr10) in segments "
                "on a Ray cluster and join them into one HDR10 file.")
    p.add_argument("script", help="the .vpy script; its output 0 must be YUV or Gray (y4m)")
    p.add_argument("-o", "--output", help="output file: .mkv/.mp4/.mov (muxed by ffmpeg), .hevc (the stream), "
                   "or y4m with --raw")
    p.add_argument("-a", "--arg", action="append", default=[], metavar="KEY=VALUE",
                   help="argument passed to the script (vspipe -a), repeatable")
    p.add_argument("--segment", type=int, default=DEFAULT_SEGMENT,
                   help=f"frames per segment, rounded up to a multiple of the FCPM chunk (default {DEFAULT_SEGMENT})")
    p.add_argument("--address", help="a Ray cluster to join: auto or HOST:PORT (default: start a local instance)")
    p.add_argument("--workers", type=int, help="at most this many segments at once (local default: one per "
                   "4 cores)")
    p.add_argument("--cpus-per-segment", type=int, help="Ray CPUs each segment holds (default: 4, at most "
                   "the smallest node's count; locally the cores over --workers)")
    p.add_argument("--x265", default="", help='extra x265 arguments, e.g. "--preset slow --crf 18"')
    p.add_argument("--peak", type=float, default=1000.0, help="to_hdr10's peak (cd/m², default 1000): "
                   "the mastering display's maximum and MaxCLL")
    p.add_argument("--max-cll", type=float, help="MaxCLL (default: --peak)")
    p.add_argument("--max-fall", type=float, help="MaxFALL (default 0, unknown)")
    p.add_argument("--mastering-display", default="p3", help="p3 (default) or bt2020")
    p.add_argument("--raw", action="store_true", help="write y4m (no encoder)")
    p.add_argument("--resume", action="store_true", help="keep the segments the manifest lists with a "
                   "matching hash; render the rest")
    p.add_argument("--work-dir", help="where segments and the manifest go (default: OUT.farm beside the "
                   "output; on a shared mount for a cluster)")
    p.add_argument("--keep", action="store_true", help="keep the work directory after the join")
    p.add_argument("--dry-run", action="store_true", help="print the plan and its overhead; render nothing")
    p.add_argument("--mode", choices=PLAN_MODES, default=PLAN_MODES[0], help="the ITM mode the script runs, "
                   f"for the planned overhead (default {PLAN_MODES[0]}, ITM's)")
    return p


def _progress_actor():
    import ray

    @ray.remote(num_cpus=0)
    class Progress:
        def __init__(self):
            self.done: dict[int, tuple[str, int]] = {}

        def report(self, idx: int, host: str, frames: int):
            self.done[idx] = (host, frames)

        def snapshot(self) -> dict:
            return dict(self.done)
    return Progress.remote()


class _Bar:
    """Frames done / total, fps, ETA and segments per node, on stderr."""

    def __init__(self, total: int, already: int):
        self.total, self.base, self.t0 = total, already, time.monotonic()
        self.tty = _err().isatty()
        self.last_line, self.last_print, self.last_done = "", 0.0, -1

    def draw(self, frames: int, per_node: Counter, running: Counter, final: bool = False):
        el = time.monotonic() - self.t0
        fps = (frames - self.base) / el if el > 0 else 0.0
        eta = (self.total - frames) / fps if fps > 0 else float("nan")
        width = 24
        fill = int(width * frames / max(1, self.total))
        nodes = ", ".join(f"{h}: {per_node.get(h, 0)} done {running.get(h, 0)} running"
                          for h in sorted(set(per_node) | set(running)))
        eta_s = "--:--" if math.isnan(eta) else f"{int(eta // 60)}:{int(eta % 60):02d}"
        line = (f"[{'#' * fill}{'.' * (width - fill)}] {frames}/{self.total} frames  {fps:.2f} fps  "
                f"ETA {eta_s}  {nodes}")
        done = sum(per_node.values())
        if self.tty:
            _err().write("\r" + line + ("\n" if final else ""))
            _err().flush()
        elif (done != self.last_done or time.monotonic() - self.last_print > 10) and line != self.last_line:
            # a log, not a terminal: a line per finished segment, else one each 10 s
            print(line, file=_err(), flush=True)
            self.last_print, self.last_done = time.monotonic(), done
        self.last_line = line


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


_ERR = None   # where the farm's own messages go while Ray's output is sent to the work directory


def _err():
    return _ERR or sys.stderr


def _say(msg: str) -> None:
    print(f"{PROG}: {msg}", file=_err(), flush=True)


def run(argv: list[str] | None = None) -> int:
    """The farm's command line; returns the exit status (raises FarmError for one-line errors).

    argv: the arguments (sys.argv[1:] for None).
    """
    a = build_parser().parse_args(argv)
    if not a.output and not a.dry_run:
        raise FarmError("-o/--output is required")
    for kv in a.arg:
        if "=" not in kv:
            raise FarmError(f"--arg needs KEY=VALUE, got {kv!r}")
    if a.workers is not None and a.workers < 1:
        raise FarmError(f"--workers must be at least 1, got {a.workers}")
    if a.cpus_per_segment is not None and a.cpus_per_segment < 1:
        raise FarmError(f"--cpus-per-segment must be at least 1, got {a.cpus_per_segment}")
    script = Path(a.script).resolve()
    cwd = os.getcwd()
    encoder = "raw" if a.raw else ("x265" if Path(a.output or "").suffix.lower() in STREAM_EXT else "ffmpeg")
    tool = None
    if encoder != "raw" and not a.dry_run:
        tool = shutil.which(encoder)
        if not tool:
            raise FarmError(f"{encoder} not found (needed for {Path(a.output).suffix} output without --raw): "
                            f"apt-get install {encoder}")
    try:
        x265_extra = shlex.split(a.x265)
    except ValueError as e:
        raise FarmError(f"--x265: {e}") from None
    from .hdr import hdr10_ffmpeg_args, hdr10_x265_args
    import vapoursynth as vs
    try:
        if encoder == "x265":
            enc_args = hdr10_x265_args(a.peak, a.max_cll, a.max_fall, mastering_display=a.mastering_display)
            enc_args += x265_extra
        else:
            enc_args = hdr10_ffmpeg_args(a.peak, a.max_cll, a.max_fall, mastering_display=a.mastering_display)
            opts, params = x265_to_ffmpeg(x265_extra)
            at = enc_args.index("-x265-params") + 1
            enc_args[at] = ":".join([enc_args[at]] + params)
            enc_args = opts + enc_args
    except vs.Error as e:
        raise FarmError(str(e).removeprefix("vsvitm: ")) from None

    info, start_s = probe(script, a.arg, cwd)
    sched = schedule_for(info.frames, info.width, info.height, a.mode)
    segments = plan_segments(info.frames, a.segment, sched.chunk)
    overhead = overhead_of_plan(sched, segments, a.mode)
    seg_len = segments[0][1] - segments[0][0]
    if a.dry_run:
        print(f"{script.name}: {info.frames} frames, {info.width}x{info.height} {info.format}, "
              f"{info.fps_num}/{info.fps_den} fps; FCPM chunk {sched.chunk}, margin {sched.margin}, reach "
              f"{sched.reach}")
        print(f"segments: {len(segments)} of {seg_len} frames (the last {segments[-1][1] - segments[-1][0]})")
        for i, (s, e) in enumerate(segments):
            x = segment_extra(sched, s, e, a.mode)
            what = (f"merges {x['merged']} frames, runs ICAM with references on {x['keys']} key frames, "
                    f"{x['steps']} recurrence steps" if a.mode == "full" else
                    f"makes the radiance maps of {x['keys']} key frames")
            print(f"  seg_{i:05d} frames {s}-{e - 1}: beyond its own frames it {what}, reads {x['reads']} source "
                  f"frames; planned overhead {100 * planned_overhead(sched, s, e, a.mode):.1f} %")
        weights = (f"merges x {MERGE_SHARE}, key frames x {ICAM_SHARE * sched.key_stride:.2f}, steps x "
                   f"{STEP_SHARE:.2f} frames" if a.mode == "full" else f"a key frame's map x {KEY_MAP_SHARE} frames")
        print(f"planned overhead (mode {a.mode}): {100 * overhead:.1f} % of the frames' work ({weights}), plus "
              f"{start_s:.1f} s of script start per segment (measured)")
        if overhead > 0.05 and len(segments) > 1:
            print(f"above 5 %: a longer --segment (the default is {DEFAULT_SEGMENT}) lowers it")
        return 0

    out = Path(a.output).resolve()
    if not out.parent.is_dir():
        raise FarmError(f"output directory does not exist: {out.parent}")
    work = Path(a.work_dir).resolve() if a.work_dir else out.with_name(out.name + ".farm")
    work.mkdir(parents=True, exist_ok=True)
    job_id = {"script": str(script), "script_sha256": sha256_file(script), "args": a.arg,
              "frames": info.frames, "size": [info.width, info.height], "format": info.format,
              "segments": [list(s) for s in segments], "encoder": encoder,
              "encoder_args": None if encoder == "raw" else enc_args}
    manifest_path = work / MANIFEST
    manifest = {"job": job_id, "segments": {}}
    if a.resume and manifest_path.exists():
        try:
            old = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            raise FarmError(f"{manifest_path} is unreadable; start without --resume") from None
        if old.get("job") != job_id:
            raise FarmError(f"{manifest_path} is for another job (script, arguments, segments or encoder "
                            f"flags differ); start without --resume or use another --work-dir")
        for key, ent in old.get("segments", {}).items():
            f = work / ent["file"]
            if f.is_file() and f.stat().st_size == ent["bytes"] and sha256_file(f) == ent["sha256"]:
                manifest["segments"][key] = ent
    else:
        for f in list(work.glob("seg_*")) + list(work.glob(".seg_*")) + list(work.glob(".fault_*")):
            f.unlink()
    for f in work.glob(".seg_*.tmp"):
        f.unlink(missing_ok=True)
    _write_json(manifest_path, manifest)
    todo = [i for i in range(len(segments)) if str(i) not in manifest["segments"]]
    if a.resume:
        _say(f"resume: {len(segments) - len(todo)} of {len(segments)} segments done, {len(todo)} to render")
    _say(f"{info.frames} frames in {len(segments)} segments of {seg_len}; planned overhead {100 * overhead:.1f} %")

    job = {"script": str(script), "vs_args": list(a.arg), "work_dir": str(work), "cwd": cwd, "encoder": encoder,
           "tool": tool, "enc_args": enc_args if encoder != "raw" else [], "fault": os.environ.get(FAULT_ENV)}
    if todo:
        _render(a, job, segments, todo, manifest, manifest_path, script, cwd, info)

    files = [work / manifest["segments"][str(i)]["file"] for i in range(len(segments))]
    if encoder == "raw":
        join_raw(files, out, info.frames)
    elif encoder == "x265":
        join_hevc(files, out)
    else:
        join_container(files, out, tool)
    _say(f"wrote {out} ({info.frames} frames)")
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _render(a, job, segments, todo, manifest, manifest_path, script, cwd, info) -> None:
    """Ray's own messages (task retries, worker logs) go to ray.log in the work directory; the
    farm's go to the terminal's stderr."""
    global _ERR
    try:
        import ray  # noqa: F401
    except ImportError:
        raise FarmError("ray is not installed: pip install 'vsvitm[farm]'") from None
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    log = open(Path(job["work_dir"]) / "ray.log", "ab")
    old_streams = sys.stdout, sys.stderr
    try:
        _ERR = os.fdopen(os.dup(saved[1]), "w", buffering=1)
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        sys.stdout = sys.stderr = open(log.fileno(), "w", buffering=1, closefd=False)
        _render_ray(a, job, segments, todo, manifest, manifest_path, script, cwd, info)
    finally:
        sys.stderr.flush()
        sys.stdout, sys.stderr = old_streams
        for fd, s in zip((1, 2), saved):
            os.dup2(s, fd)
            os.close(s)
        log.close()
        if _ERR is not None:
            _ERR.close()
            _ERR = None


def _render_ray(a, job, segments, todo, manifest, manifest_path, script, cwd, info) -> None:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    ncpu = os.cpu_count() or 1
    try:
        if a.address:
            ray.init(address=a.address, log_to_driver=False, logging_level="ERROR")
        else:
            ray.init(num_cpus=ncpu, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    except Exception as e:   # noqa: BLE001 - ray raises many kinds; all mean "no cluster"
        raise FarmError(f"cannot start or join Ray ({a.address or 'local'}): {str(e).splitlines()[0]}") from None
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]
        min_cpus = int(min(n["Resources"]["CPU"] for n in nodes)) if nodes else 1
        if a.cpus_per_segment:
            cps = a.cpus_per_segment
        elif not a.address and a.workers:
            cps = max(1, ncpu // a.workers)
        else:
            cps = 4
        cps = max(1, min(cps, min_cpus))
        limit = a.workers or len(todo)
        if a.address:
            paths = [str(script), job["work_dir"], cwd] + source_paths(script, a.arg, cwd)
            tools = ["vspipe"] + ([] if job["encoder"] == "raw" else [job["tool"]])
            check = ray.remote(check_node)
            refs = [check.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                    .remote(paths, tools) for n in nodes]
            for n, res in zip(nodes, ray.get(refs)):
                if res["missing"] or res["tools"]:
                    what = ", ".join(res["missing"] + [f"the {t} executable" for t in res["tools"]])
                    raise FarmError(f"node {res['host']} ({n['NodeManagerAddress']}) cannot see {what}: the "
                                    f"script, its source media and the work directory must be at the same path "
                                    f"on every node (a shared mount), with vsvitm and its tools installed")
        progress = _progress_actor()
        task = ray.remote(render_segment).options(num_cpus=cps, max_retries=MAX_ATTEMPTS - 1, retry_exceptions=True)
        queue = deque(todo)
        pending: dict = {}
        done_frames = sum(e["end"] - e["start"] for e in manifest["segments"].values())
        per_node = Counter()
        bar = _Bar(info.frames, done_frames)
        while queue or pending:
            while queue and len(pending) < limit:
                i = queue.popleft()
                s, e = segments[i]
                pending[task.remote(job, i, s, e, progress)] = i
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            for ref in ready:
                i = pending.pop(ref)
                s, e = segments[i]
                try:
                    ent = ray.get(ref)
                except Exception as err:   # noqa: BLE001
                    for other in pending:
                        ray.cancel(other, force=True)
                    raise FarmError(_failure(err, i, s, e), 1) from None
                manifest["segments"][str(i)] = ent
                _write_json(manifest_path, manifest)
                done_frames += e - s
                per_node[ent["node"]] += 1
            snap = ray.get(progress.snapshot.remote())
            running = Counter(snap[i][0] for i in pending.values() if i in snap)
            partial = sum(snap[i][1] for i in pending.values() if i in snap)
            bar.draw(done_frames + partial, per_node, running)
        bar.draw(done_frames, per_node, Counter(), final=True)
        for f in Path(job["work_dir"]).glob(".seg_*.tmp"):   # what attempts on lost workers left
            f.unlink(missing_ok=True)
    finally:
        ray.shutdown()


def _failure(err: Exception, idx: int, start: int, end: int) -> str:
    cause = getattr(err, "cause", None)
    if isinstance(err, SegmentError):
        cause = err
    if isinstance(cause, SegmentError):
        tail = "\n".join("    " + ln for ln in cause.tail[-STDERR_LINES:])
        return (f"segment {idx} (frames {start}-{end - 1}) failed {MAX_ATTEMPTS} times: {cause.reason}"
                + (f"; last lines of its stderr:\n{tail}" if tail else ""))
    first = str(err).strip().splitlines()
    return (f"segment {idx} (frames {start}-{end - 1}) failed {MAX_ATTEMPTS} times: "
            f"{type(err).__name__}: {first[-1] if first else ''}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``vsvitm-farm``: errors become one line on stderr and exit status 2 (bad
    input) or 1 (a failed render).

    argv: the arguments (sys.argv[1:] for None).
    """
    try:
        return run(argv)
    except FarmError as e:
        _say(f"error: {e}")
        return e.status
    except KeyboardInterrupt:
        _say("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
