"""The machine a measurement ran on (CPU, vector extensions, GPU, software, load) and this process's memory."""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

VECTOR_FLAGS = (("avx512f", "AVX-512"), ("avx512_vnni", "AVX-512 VNNI"), ("avx_vnni", "AVX-VNNI"))


def cpu_description(cpuinfo: str) -> str:
    """The first processor's name, family/model and vector extensions from /proc/cpuinfo's text. Hosts that
    print the same name ("AMD EPYC") differ: one without AVX-512 ran one graph 1.4x (fp32) to 2x (int8) slower.

    cpuinfo: the text of /proc/cpuinfo.
    """
    info: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            if info:
                break  # end of the first processor's block
            continue
        k, sep, v = line.partition(":")
        if sep:
            info.setdefault(k.strip(), v.strip())
    if "model name" not in info:
        return ""
    flags = set(info.get("flags", "").split())
    ext = ["AVX2" if "avx2" in flags else "no AVX2"]
    ext += [name for flag, name in VECTOR_FLAGS if flag in flags] or ["no AVX-512"]
    fam = f"family {info['cpu family']}, model {info['model']}; " if "cpu family" in info and "model" in info else ""
    return f"{info['model name']} ({fam}{', '.join(ext)})"


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_lines() -> list[str]:
    """Markdown list items describing this machine: CPU, GPU, software versions and load average."""
    cpu = "unknown CPU"
    try:
        cpu = cpu_description(Path("/proc/cpuinfo").read_text()) or cpu
    except OSError:
        cpu = platform.processor() or cpu
    ram = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    gpu = "none (nvidia-smi not found)"
    if shutil.which("nvidia-smi"):
        r = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                           capture_output=True, text=True)
        gpu = "; ".join(s.strip() for s in r.stdout.splitlines() if s.strip()) or f"nvidia-smi failed: {r.stderr.strip()}"
    import onnxruntime as ort
    import vapoursynth as vs
    try:
        load = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        load = "?"
    return [
        f"- CPU: {cpu}, {os.cpu_count()} logical cores ({affinity} usable), RAM {ram}",
        f"- GPU: {gpu}",
        f"- software: Python {platform.python_version()}, VapourSynth {vs.__version__}, "
        f"onnxruntime {ort.__version__} (providers: {', '.join(ort.get_available_providers())}), {platform.platform()}",
        f"- load average at start (1/5/15 min): {load}",
    ]


def proc_status_kib(field: str) -> int | None:
    """A field of /proc/self/status in KiB (VmRSS, VmHWM, ...), or None where there is none (not Linux).

    field: the field's name, without the colon.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def vm_hwm_mib() -> float | None:
    """This process's peak resident memory (VmHWM), MiB, or None off Linux."""
    kib = proc_status_kib("VmHWM")
    return None if kib is None else kib / 1024


def gpu_memory_mib(pid: int) -> float | None:
    """GPU memory used by a process as nvidia-smi reports it, MiB, or None (no nvidia-smi, or not listed).

    pid: the process.
    """
    if not shutil.which("nvidia-smi"):
        return None
    r = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                       capture_output=True, text=True)
    for line in r.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0] == str(pid):
            try:
                return float(parts[1])
            except ValueError:
                return None
    return None
