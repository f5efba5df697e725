"""vsvitm-farm's command line: arguments, the work directory and its manifest, Ray, progress, the join."""
from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import sys
import time
import uuid
from collections import Counter, deque
from pathlib import Path

from .common import (DEFAULT_SEGMENT, FAULT_ENV, MANIFEST, MAX_ATTEMPTS, PROG, STDERR_LINES, STREAM_EXT, FarmError,
                     SegmentError, sha256_file)
from .join import join_container, join_hevc, join_raw, x265_to_ffmpeg
from .plan import (ICAM_SHARE, KEY_MAP_SHARE, MERGE_SHARE, PLAN_MODES, STEP_SHARE, overhead_of_plan, plan_segments,
                   planned_overhead, schedule_for, segment_extra)
from .probe import check_node, probe, source_paths
from .segment import render_segment


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
    _check_args(a)
    script = Path(a.script).resolve()
    cwd = os.getcwd()
    encoder, tool, enc_args = _encoder(a)
    info, start_s = probe(script, a.arg, cwd)
    sched = schedule_for(info.frames, info.width, info.height, a.mode)
    segments = plan_segments(info.frames, a.segment, sched.chunk)
    overhead = overhead_of_plan(sched, segments, a.mode)
    seg_len = segments[0][1] - segments[0][0]
    if a.dry_run:
        _print_plan(a, script, info, sched, segments, overhead, start_s)
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
    manifest = _start_manifest(work, manifest_path, job_id, a.resume)
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


def _check_args(a) -> None:
    """One-line errors for arguments the parser cannot check alone."""
    if not a.output and not a.dry_run:
        raise FarmError("-o/--output is required")
    for kv in a.arg:
        if "=" not in kv:
            raise FarmError(f"--arg needs KEY=VALUE, got {kv!r}")
    if a.workers is not None and a.workers < 1:
        raise FarmError(f"--workers must be at least 1, got {a.workers}")
    if a.cpus_per_segment is not None and a.cpus_per_segment < 1:
        raise FarmError(f"--cpus-per-segment must be at least 1, got {a.cpus_per_segment}")


def _encoder(a) -> tuple[str, str | None, list[str]]:
    """(encoder: raw, x265 or ffmpeg by the output's name; its executable; its arguments with the HDR10 flags)."""
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
    from ..hdr import hdr10_ffmpeg_args, hdr10_x265_args
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
    return encoder, tool, enc_args


def _print_plan(a, script: Path, info, sched, segments: list, overhead: float, start_s: float) -> None:
    """--dry-run: the clip, the segments and what each does beyond its own frames, the planned overhead."""
    seg_len = segments[0][1] - segments[0][0]
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


def _start_manifest(work: Path, manifest_path: Path, job_id: dict, resume: bool) -> dict:
    """The run's manifest, written: with resume, the segments the old one lists whose files still have
    their hash (refused for another job); else empty, the work directory's old segments removed."""
    manifest = {"job": job_id, "segments": {}}
    if resume and manifest_path.exists():
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
    return manifest


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
