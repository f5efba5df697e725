"""The model folder: manifests (icam.json, fcpm.json), the graphs each lists, their ONNX Runtime sessions.

A manifest (format 2) names its network's settings (modulus, FCPM's keys and hidden width, the
training config) and, under "graphs", every graph of the folder with its variants: "fp32" (g.onnx),
"fp16" (g_fp16.onnx, for Backend.ORT_CUDA(fp16=True)) and "int8" (g_int8.onnx, made by
vsvitm.training.quantize from that fp32 graph). A folder of another format is refused with the fix:
`python -m vsvitm.engine FOLDER` writes its manifests' graph lists from the files there.

    python -m vsvitm.engine FOLDER   # (re)write the "graphs" of FOLDER/icam.json and fcpm.json
"""
from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .. import backends

MODEL_DIR = Path(__file__).resolve().parent.parent / "models"
MODEL_FORMAT = 2
VARIANTS = {"fp32": "", "fp16": "_fp16", "int8": "_int8"}  # variant -> file name suffix
ICAM_GRAPHS = ("icam_init", "icam_ref", "icam_decode")
FCPM_GRAPHS = ("fcpm_merge", "fcpm_back", "fcpm_fwd", "fcpm_fuse")
# CPU forms of the recurrent steps, fed the state already warped (flow.warp_planes, OpenCV: at 512x512
# a 16-channel warp took ~70 ms inside the graph with ONNX Runtime's GridSample, ~12 ms this way).
# Used on the CPU provider when the manifest lists them.
PREWARP_GRAPHS = {"fcpm_back": "fcpm_back_cpu", "fcpm_fwd": "fcpm_fwd_cpu"}
# Likewise the merge in parts around its warps, warped between by OpenCV (the merge's GridSamples were
# ~55 % of its time): each key's flow correction (fcpm_merge_correct, its pooling, warp and upsampling
# done by OpenCV too), then masks and mix (fcpm_merge_mix). Used with the step graphs when listed.
MERGE_CORRECT = "fcpm_merge_correct"
SPLIT_MERGE = ("fcpm_merge_mix",)
# And ICAM's reference step in four graphs around its feature warps (training/icam_net.ICAM.ref_a..d),
# warped between by OpenCV: in one graph those warps (gathers of 24-channel maps at 1/2 res, a
# full-res GridSample) were about a quarter of the step's time.
SPLIT_REF = ("icam_ref_a", "icam_ref_b", "icam_ref_c", "icam_ref_d")
NET_GRAPHS = {"icam": ICAM_GRAPHS + SPLIT_REF,
              "fcpm": FCPM_GRAPHS + tuple(PREWARP_GRAPHS.values()) + (MERGE_CORRECT,) + SPLIT_MERGE}
GRAPH_INPUTS = {"icam_init": ("key",), "icam_ref": ("fl", "g", "ref", "preflow"), "icam_decode": ("key", "fl", "g"),
                "fcpm_merge": ("cur", "keys", "ys", "preflows", "valid"), "fcpm_back": ("x", "cur", "xn", "h", "flow"),
                "fcpm_fwd": ("x", "cur", "xn", "h", "flow"), "fcpm_fuse": ("hf", "hb", "x", "cur"),
                "fcpm_back_cpu": ("x", "cur", "xn", "hw"), "fcpm_fwd_cpu": ("x", "cur", "xn", "hw"),
                MERGE_CORRECT: ("x",), "fcpm_merge_mix": ("cur", "wys", "wkeys", "valid"),
                "icam_ref_a": ("ref", "preflow"), "icam_ref_b": ("fl", "rl", "w0", "pf"),
                "icam_ref_c": ("fl", "w1", "flow"), "icam_ref_d": ("fl", "g", "rl", "samples", "mod", "flow", "wr")}
# The CPU graphs are used up to this frame size. At 1920x1080 the OpenCV state warps raised a render's
# peak RSS (vsvitm-memory-trace: 4066-4101 MiB against 3982-3991 with the in-graph warps, mostly
# glibc heap not given back), so large frames keep the in-graph warps and their memory.
# With the heap trimmed after each stage, all CPU forms at 1080p make a frame 17 % faster
# but peak at 4218 MiB with two key frames' ICAM at once, against 3810: over the 4 GB target.
CPU_WARPS_MAX_PIXELS = 1 << 20
# inputs a graph may have: the merge of an FCPM exported with its evidence gate (fcpm_net.FCPMConfig)
OPTIONAL_INPUTS = {"fcpm_merge": ("evidence",), "fcpm_merge_mix": ("wev",)}
# metadata key of an int8 graph (vsvitm.training.quantize): the SHA-256 of the fp32 graph it was made from
INT8_SOURCE_KEY = "vsvitm_fp32_sha256"
REEXPORT = "re-export the models (docs/TRAINING.md)"


def graph_path(folder: Path, graph: str, variant: str = "fp32") -> Path:
    return Path(folder) / f"{graph}{VARIANTS[variant]}.onnx"


def graph_variants(folder: Path, net: str, variants=tuple(VARIANTS)) -> dict[str, list[str]]:
    """The graphs of `net` ("icam" or "fcpm") in `folder`, each with those of `variants` whose files are there."""
    found = {g: [v for v in variants if graph_path(folder, g, v).exists()] for g in NET_GRAPHS[net]}
    return {g: vs for g, vs in found.items() if vs}


def write_manifest(folder: Path, net: str, meta: dict, variants=tuple(VARIANTS)) -> Path:
    """folder/<net>.json: `meta` with this format and the graphs found in the folder (of `variants`:
    an export lists fp32 and fp16 only, as int8 files left from earlier graphs are stale)."""
    path = Path(folder) / f"{net}.json"
    path.write_text(json.dumps({**meta, "format": MODEL_FORMAT, "graphs": graph_variants(folder, net, variants)},
                               indent=1, sort_keys=True))
    return path


def list_variant(folder: Path, graph: str, variant: str) -> None:
    """Add `variant` of `graph` (its file written just now) to the graph list of its manifest."""
    net = next(n for n, gs in NET_GRAPHS.items() if graph in gs)
    path = Path(folder) / f"{net}.json"
    meta = read_manifest(folder, net)
    have = meta["graphs"].setdefault(graph, [])
    if variant not in have:
        have.append(variant)
    path.write_text(json.dumps(meta, indent=1, sort_keys=True))


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def check_int8(sess, int8_path: Path, fp32_path: Path) -> None:
    """An int8 graph made from another fp32 graph (the models were re-exported since) would run other
    weights: refuse it."""
    made_from = sess.get_modelmeta().custom_metadata_map.get(INT8_SOURCE_KEY)
    if made_from != file_sha256(fp32_path):
        raise ValueError(f"vsvitm: {int8_path} was not made from this {fp32_path.name} (re-exported since?); "
                         f"quantize it again (docs/TRAINING.md) into {int8_path.parent}, "
                         "or use Backend.ORT_CPU(int8=False)")


def read_manifest(folder: Path, net: str) -> dict:
    """The manifest of `net` in `folder`, checked: its format, its settings, its graph list."""
    path = Path(folder) / f"{net}.json"
    if not path.exists():
        raise FileNotFoundError(
            f"vsvitm: no trained {net.upper()} model in {folder} (missing {path.name}). "
            f"Reinstall vsvitm, or train and export one (docs/TRAINING.md)")
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"vsvitm: {path} is unreadable ({e}); reinstall vsvitm or {REEXPORT}") from e
    fmt = meta.get("format") if isinstance(meta, dict) else None
    if fmt != MODEL_FORMAT:
        raise ValueError(f"vsvitm: {path} is model format {fmt!r}; this vsvitm reads format {MODEL_FORMAT}, whose "
                         f"manifest lists each graph's variants. Write it with: python -m vsvitm.engine {folder} "
                         f"(or {REEXPORT})")
    bad = [k for k in ("modulus", "keys", "hidden")[: 3 if net == "fcpm" else 1]
           if not (isinstance(meta.get(k), int) and not isinstance(meta.get(k), bool) and meta[k] >= 1)]
    graphs = meta.get("graphs")
    if not (isinstance(graphs, dict) and all(isinstance(v, list) and set(v) <= set(VARIANTS) for v in graphs.values())):
        bad.append('"graphs" (graph name -> list of variants: fp32, fp16, int8)')
    if bad:
        raise ValueError(f"vsvitm: {path} lacks a valid {', '.join(bad)}; it is damaged: "
                         f"reinstall vsvitm, run python -m vsvitm.engine {folder}, or {REEXPORT}")
    return meta


@dataclass
class ModelSet:
    """The sessions of a model folder on one backend and what the engine reads off them."""
    folder: Path
    icam_meta: dict
    fcpm_meta: dict = field(default_factory=dict)
    sess: dict = field(default_factory=dict)     # graph name -> InferenceSession
    paths: dict = field(default_factory=dict)    # graph name -> the file it runs
    int8_graphs: list = field(default_factory=list)
    prewarp: bool = False       # the recurrent steps as PREWARP_GRAPHS (state warped by OpenCV)
    split_merge: bool = False   # the merge as MERGE_CORRECT + SPLIT_MERGE
    split_ref: bool = False     # ICAM's reference step as SPLIT_REF
    merge_corrects: bool = True  # FCPM corrects its pre-flows (an ablation without warps by them alone)
    merge_evidence: bool = False  # the merge reads the keys' evidence (FCPM's evidence gate)
    bind_device: str | None = None  # "cuda": every session on CUDA, run with IO binding
    on_cpu: bool = True

    @property
    def modulus(self) -> int:
        return max(int(self.icam_meta["modulus"]), int(self.fcpm_meta.get("modulus", 1)))

    def provider(self, graph: str) -> str:
        return self.sess[graph].get_providers()[0]

    def add(self, graph: str, variant: str, backend, int8: bool = False) -> None:
        """A session for `graph`'s `variant`; with int8, its int8 variant where the manifest lists one."""
        meta = self.icam_meta if graph in NET_GRAPHS["icam"] else self.fcpm_meta
        listed = meta["graphs"].get(graph, [])
        if int8 and "int8" in listed:
            variant = "int8"
        p = graph_path(self.folder, graph, variant)
        if variant not in listed or not p.exists():
            raise FileNotFoundError(f"vsvitm: model file {p} is " + ("missing; " if variant in listed else
                                    f"not listed in {p.parent / (graph.split('_')[0] + '.json')}; ") +
                                    f"reinstall vsvitm or {REEXPORT}" + (" (or use fp16=False)" if variant == "fp16" else ""))
        self.sess[graph], self.paths[graph] = backends.session(p, backend), p
        if variant == "int8":
            check_int8(self.sess[graph], p, graph_path(self.folder, graph))
            self.int8_graphs.append(graph)

    def lists(self, graphs, variant: str = "fp32") -> bool:
        metas = {**self.icam_meta.get("graphs", {}), **self.fcpm_meta.get("graphs", {})}
        return all(variant in metas.get(g, ()) for g in graphs)

    def check_inputs(self) -> None:
        """A file renamed or mixed up with another graph: say so now."""
        for g, sess in self.sess.items():
            got = sorted(i.name for i in sess.get_inputs())
            if got not in (sorted(GRAPH_INPUTS[g]), sorted(GRAPH_INPUTS[g] + OPTIONAL_INPUTS.get(g, ()))):
                raise ValueError(f"vsvitm: {self.paths[g]} is not a {g} graph (inputs {got}, "
                                 f"expected {sorted(GRAPH_INPUTS[g])}); reinstall vsvitm or {REEXPORT}")
        if len(self.sess["icam_decode"].get_outputs()) < 2:
            raise ValueError(f"vsvitm: {self.paths['icam_decode']} gives no reference evidence (an older export); "
                             f"{REEXPORT}")


def load(models: str | Path | None, backend, need_fcpm: bool) -> ModelSet:
    """The sessions of the graphs the engine runs on `backend` (a resolved Backend), made now so that a
    broken or truncated file fails at ITM() time, not mid-encode; the CPU forms where the provider is
    the CPU and the manifest lists them."""
    folder = Path(models) if models is not None else MODEL_DIR
    fp16 = bool(getattr(backend, "fp16", False))
    variant = "fp16" if fp16 else "fp32"
    m = ModelSet(folder, read_manifest(folder, "icam"))
    if need_fcpm:
        m.fcpm_meta = read_manifest(folder, "fcpm")
    for g in ICAM_GRAPHS + (FCPM_GRAPHS if need_fcpm else ()):
        m.add(g, variant, backend)
    int8 = backends.use_int8(backend)

    def cpu_forms(graphs, first: str) -> bool:
        if fp16 or m.provider(first) != "CPUExecutionProvider" or not m.lists(graphs):
            return False
        for g in graphs:
            m.add(g, "fp32", backend, int8)
        return True
    m.prewarp = need_fcpm and cpu_forms(tuple(PREWARP_GRAPHS.values()), "fcpm_back")
    m.merge_corrects = bool(m.fcpm_meta.get("config", {}).get("flow_correction", True))
    m.split_merge = m.prewarp and cpu_forms(SPLIT_MERGE + ((MERGE_CORRECT,) if m.merge_corrects else ()), "fcpm_back")
    m.split_ref = cpu_forms(SPLIT_REF, "icam_ref")
    m.check_inputs()
    m.bind_device = "cuda" if all(s.get_providers()[0] == "CUDAExecutionProvider" for s in m.sess.values()) else None
    m.on_cpu = all(s.get_providers()[0] == "CPUExecutionProvider" for s in m.sess.values())
    m.merge_evidence = need_fcpm and "evidence" in {i.name for i in m.sess["fcpm_merge"].get_inputs()}
    if m.split_merge and m.merge_evidence != ("wev" in {i.name for i in m.sess["fcpm_merge_mix"].get_inputs()}):
        raise ValueError(f"vsvitm: {folder} mixes merge graphs with and without the evidence gate; {REEXPORT}")
    return m


def upgrade(folder: Path) -> list[Path]:
    """Rewrite the manifests in `folder` in this format, their graph lists from the files there."""
    done = []
    for net in NET_GRAPHS:
        path = Path(folder) / f"{net}.json"
        if path.exists():
            done.append(write_manifest(folder, net, json.loads(path.read_text())))
    return done


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    for p in upgrade(Path(args[0])):
        print(f"{p}: format {MODEL_FORMAT}, graphs {json.loads(p.read_text())['graphs']}")
    return 0
