"""Export the torch networks to ONNX graphs the plugin runs (fp32 and fp16), with dynamic H/W.

Legacy (TorchScript) exporter: the dynamo exporter silently specialises shapes. Padding
to the network's modulus happens in the plugin, not in the graph. The IR version is pinned so that
ONNX Runtime releases from 1.16 on load the files.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

OPSET = 17
IR_VERSION = 8


class _Bound(torch.nn.Module):
    """Wraps one method of a network as a module's forward, so each graph exports on its own."""

    def __init__(self, net: torch.nn.Module, method: str):
        super().__init__()
        self.net, self.method = net, method

    def forward(self, *args):
        return getattr(self.net, self.method)(*args)


def export_graph(net: torch.nn.Module, method: str, args: tuple, names_in: list[str], names_out: list[str],
                 path: Path) -> Path:
    """Export net.method(*args); every 4-D input/output gets dynamic N, H, W axes."""
    import onnx
    dyn = {n: {0: "N", 2: f"{n}_h", 3: f"{n}_w"} for n in names_in + names_out}
    with warnings.catch_warnings():
        # dynamo=False on purpose: the shipped graphs are TorchScript exports (opset 13, IR 8, the node
        # names vsvitm-quantize and the engine's checks know); torch's notice that this exporter is
        # legacy, and the one its logging setup gives, say nothing about these graphs.
        warnings.filterwarnings("ignore", "You are using the legacy TorchScript-based ONNX export", DeprecationWarning)
        warnings.filterwarnings("ignore", "The feature will be removed", DeprecationWarning)
        torch.onnx.export(_Bound(net, method).eval(), args, str(path), input_names=names_in, output_names=names_out,
                          dynamic_axes=dyn, opset_version=OPSET, dynamo=False, do_constant_folding=True)
    m = onnx.load(str(path))
    m.ir_version = IR_VERSION
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return path


def export_graphs(net: torch.nn.Module, specs: list[tuple], fp16: bool) -> list[Path]:
    """Each (method, args, names_in, names_out, path) as an fp32 graph whose feature warps are
    gathers (faster on ONNX Runtime's CPU provider, nets_common.warp_impl) and, with fp16, as a
    `_fp16` graph made from a GridSample export (the fp16 converter keeps GridSample's sampling
    coordinates fp32; CUDA has a native GridSample)."""
    from .nets_common import warp_impl
    fp32, half = [], []
    for method, args, names_in, names_out, path in specs:
        with warp_impl("gather"):
            fp32.append(export_graph(net, method, args, names_in, names_out, path))
        if fp16:
            tmp = path.with_name(path.stem + "_grid.onnx")
            with warp_impl("grid"):
                export_graph(net, method, args, names_in, names_out, tmp)
            half.append(to_fp16(tmp, path.with_name(path.stem + "_fp16.onnx")))
            tmp.unlink()
    return fp32 + half


# Ops whose outputs are learned features; the walk that keeps sampling coordinates in fp32 stops there.
_FEATURE_OPS = {"Conv", "ConvTranspose", "MatMul", "Gemm"}


def coordinate_nodes(graph) -> list[str]:
    """Names of the nodes that compute GridSample's sampling grid from a flow: pixel coordinates,
    their normalisation by the frame size, the flow added to them (stopping at the learned layers).
    In fp16 a coordinate above 1024 has a step of 1 px (2 px above 2048), so warps would snap to
    whole pixels at HD sizes; these cheap elementwise nodes stay fp32."""
    producer = {o: n for n in graph.node for o in n.output}
    keep, todo = set(), [n.input[1] for n in graph.node if n.op_type == "GridSample"]
    while todo:
        node = producer.get(todo.pop())
        if node is None or node.name in keep or node.op_type in _FEATURE_OPS:
            continue
        keep.add(node.name)
        todo.extend(node.input)
    return sorted(keep)


def to_fp16(src: Path, dst: Path) -> Path:
    """fp16 weights/activations, fp32 inputs and outputs; GridSample/Resize and the sampling-grid
    arithmetic stay fp32 (sampling precision). Checked by loading the result in ONNX Runtime: the
    converter once wrote Casts whose target type disagreed with its own type annotations, and
    ORT refused those files (tests/test_export.py)."""
    import onnx
    from onnxconverter_common import float16
    m = onnx.load(str(src))
    _detach_outputs(m)
    m16 = float16.convert_float_to_float16(m, keep_io_types=True, op_block_list=["GridSample", "Resize"],
                                           node_block_list=coordinate_nodes(m.graph))
    _fix_casts(m16)
    m16.ir_version = IR_VERSION
    onnx.save(m16, str(dst))
    return dst


def _detach_outputs(model) -> None:
    """A graph output that other nodes also read (ICAM's corrected flow) gets its own Identity: the
    converter otherwise turned that output into float16 despite keep_io_types, and left the internal
    readers with mismatched types."""
    from onnx import helper
    g = model.graph
    outs = {o.name for o in g.output}
    read = {i for n in g.node for i in n.input}
    for name in sorted(outs & read):
        inner = name + "_inner"
        for n in g.node:
            n.output[:] = [inner if o == name else o for o in n.output]
            n.input[:] = [inner if i == name else i for i in n.input]
        g.node.append(helper.make_node("Identity", [inner], [name], name=name + "_detached"))


def _fix_casts(model) -> None:
    """A Cast to float whose output the converter annotated as float16 (it converts annotations
    but not Cast targets) is made a Cast to float16, so the file agrees with itself."""
    from onnx import TensorProto
    g = model.graph
    vi = {v.name: v.type.tensor_type.elem_type for v in list(g.value_info) + list(g.output)}
    for node in g.node:
        if node.op_type != "Cast":
            continue
        for a in node.attribute:
            if a.name == "to" and a.i == TensorProto.FLOAT and vi.get(node.output[0]) == TensorProto.FLOAT16:
                a.i = TensorProto.FLOAT16


def write_manifest(out_dir: Path, name: str, meta: dict):
    from ..engine.models import write_manifest as write  # the format the engine reads, with the graphs exported
    write(out_dir, name, meta, ("fp32", "fp16"))


def export_icam(model, out_dir: Path, size: tuple[int, int] = (128, 192), fp16: bool = True, meta: dict | None = None) -> list[Path]:
    """ICAM -> icam_init.onnx, icam_ref.onnx, icam_decode.onnx (+ _fp16 variants) and icam.json."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    h, w = size
    key = torch.rand(1, 4, h, w)
    ref = torch.rand(1, 4, h, w)
    pf = torch.randn(1, 2, h, w)
    with torch.no_grad():
        fl, g = model.init(key)
    paths = export_graphs(model, [
        ("init", (key,), ["key"], ["fl", "g"], out_dir / "icam_init.onnx"),
        ("ref_step", (fl, g, ref, pf), ["fl", "g", "ref", "preflow"], ["fl_out", "g_out", "flow"],
         out_dir / "icam_ref.onnx"),
        ("decode_evidence", (key, fl, g), ["key", "fl", "g"], ["y", "evidence"], out_dir / "icam_decode.onnx"),
    ], fp16)
    # CPU-only form of the reference step: four graphs around its feature warps, which the plugin
    # does with OpenCV (engine.SPLIT_REF, ICAM.ref_a..ref_d)
    from ..engine import SPLIT_REF
    for stale in SPLIT_REF:  # from an earlier export into this folder
        (out_dir / f"{stale}.onnx").unlink(missing_ok=True)
    if model.splittable:
        with torch.no_grad():
            rl, pf2 = model.ref_a(ref, pf)
            flow = model.ref_b(fl, rl, rl, pf2)
            flows, mod, _ = model.ref_c(fl, rl, flow)
        samples = torch.rand(1, rl.shape[1] * mod.shape[1], *rl.shape[2:])
        paths += export_graphs(model, [
            ("ref_a", (ref, pf), ["ref", "preflow"], ["rl", "pf"], out_dir / "icam_ref_a.onnx"),
            ("ref_b", (fl, rl, rl, pf2), ["fl", "rl", "w0", "pf"], ["flow"], out_dir / "icam_ref_b.onnx"),
            ("ref_c", (fl, rl, flow), ["fl", "w1", "flow"], ["flows", "mod", "fup"], out_dir / "icam_ref_c.onnx"),
            ("ref_d", (fl, g, rl, samples, mod, flow, ref), ["fl", "g", "rl", "samples", "mod", "flow", "wr"],
             ["fl_out", "g_out"], out_dir / "icam_ref_d.onnx"),
        ], fp16=False)
    from .icam_net import MODULUS
    write_manifest(out_dir, "icam", {"modulus": MODULUS, "config": model.cfg.to_dict(), **(meta or {})})
    return paths


def export_fcpm(model, out_dir: Path, size: tuple[int, int] = (64, 96), fp16: bool = True, meta: dict | None = None) -> list[Path]:
    """FCPM -> fcpm_merge/back/fwd/fuse.onnx (+ _fp16 variants), fcpm_back_cpu/fwd_cpu.onnx (the steps
    without their warp, for the CPU) and fcpm.json."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    h, w = size
    k, hid = model.cfg.keys, model.cfg.hidden
    cur = torch.rand(1, 4, h, w)
    keys = torch.rand(1, 4 * k, h, w)
    ys = torch.rand(1, 3 * k, h, w) * 4
    pf = torch.randn(1, 2 * k, h, w)
    valid = torch.ones(1, k, 1, 1)
    ev = torch.rand(1, k, h, w)
    x = torch.randn(1, 3, h, w)
    hh = torch.randn(1, hid, h, w)
    fl = torch.randn(1, 2, h, w)
    gate = model.cfg.evidence_gate > 0 and model.cfg.fallback  # the merge then also reads the keys' evidence
    paths = export_graphs(model, [
        ("merge", (cur, keys, ys, pf, valid) + ((ev,) if gate else ()),
         ["cur", "keys", "ys", "preflows", "valid"] + (["evidence"] if gate else []), ["xhat"], out_dir / "fcpm_merge.onnx"),
        ("back", (x, cur, x, hh, fl), ["x", "cur", "xn", "h", "flow"], ["h_out"], out_dir / "fcpm_back.onnx"),
        ("fwd", (x, cur, x, hh, fl), ["x", "cur", "xn", "h", "flow"], ["h_out"], out_dir / "fcpm_fwd.onnx"),
        ("fuse", (hh, hh, x, cur), ["hf", "hb", "x", "cur"], ["y"], out_dir / "fcpm_fuse.onnx"),
    ], fp16)
    # CPU-only forms: the recurrent steps fed the state already warped, and the merge in two parts
    # around its warps (engine.Engine.prewarp / split_merge: the plugin warps with OpenCV). A merge
    # with the flow cue also needs the pre-flows after the warps: it keeps the one-graph merge.
    cpu = [("back_prewarped", (x, cur, x, hh), ["x", "cur", "xn", "hw"], ["h_out"], out_dir / "fcpm_back_cpu.onnx"),
           ("fwd_prewarped", (x, cur, x, hh), ["x", "cur", "xn", "hw"], ["h_out"], out_dir / "fcpm_fwd_cpu.onnx")]
    if not model.cfg.flow_cue:
        w3 = torch.randn(1, 3 * k, h, w)
        if model.cfg.flow_correction:  # without it the plugin warps by the pre-flows themselves
            cpu.append(("correction", (torch.rand(k, 8, h // 2, w // 2),), ["x"], ["d"], out_dir / "fcpm_merge_correct.onnx"))
        cpu += [("merge_mix", (cur, w3, torch.rand(1, 3 * k, h, w), valid) + ((ev,) if gate else ()),
                 ["cur", "wys", "wkeys", "valid"] + (["wev"] if gate else []), ["xhat"], out_dir / "fcpm_merge_mix.onnx")]
    for stale in ("fcpm_merge_flows.onnx", "fcpm_merge_flows_int8.onnx", "fcpm_merge_correct.onnx",
                  "fcpm_merge_mix.onnx"):  # from an earlier export into this folder (merge_flows: an older format)
        (out_dir / stale).unlink(missing_ok=True)
    paths += export_graphs(model, cpu, fp16=False)
    from .fcpm_net import MODULUS
    write_manifest(out_dir, "fcpm", {"modulus": MODULUS, "keys": k, "hidden": hid,
                                     "config": model.cfg.to_dict(), **(meta or {})})
    return paths


def state_dict_from_onnx(paths: list[Path], prefix: str = "net.") -> dict:
    """The torch state dict behind exported fp32 graphs (the inverse of export_graph).

    The legacy exporter keeps parameter names ("net.enc.e1.0.weight"), except for nn.Linear weights
    feeding a MatMul: those become anonymous, transposed constants ("onnx::MatMul_1348"). They are
    named back through the Add that applies the Linear's bias. Why at all: the shipped ONNX files are
    the only copy of a trained model a fresh clone has, and fine-tuning needs torch weights."""
    import onnx
    from onnx import numpy_helper
    state: dict = {}
    for p in paths:
        g = onnx.load(str(p)).graph
        inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        consumers: dict[str, list] = {}
        for node in g.node:
            for i in node.input:
                consumers.setdefault(i, []).append(node)
        for name, arr in inits.items():
            if name.startswith(prefix):
                state[name[len(prefix):]] = torch.from_numpy(arr.copy())
                continue
            mm = [n for n in consumers.get(name, []) if n.op_type == "MatMul"]
            if len(mm) != 1 or arr.ndim != 2:
                continue  # a folded constant, not a parameter
            adds = [n for n in consumers.get(mm[0].output[0], []) if n.op_type == "Add"]
            bias = [i for n in adds for i in n.input if i.startswith(prefix) and i.endswith(".bias")]
            if len(bias) != 1:
                raise ValueError(f"{p.name}: cannot name the Linear weight {name} (no unique bias Add)")
            state[bias[0][len(prefix):-len(".bias")] + ".weight"] = torch.from_numpy(arr.T.copy())
    return state


def checkpoint_from_models(models_dir: Path, which: str) -> dict:
    """A training checkpoint ({"model", "config", "step"}) rebuilt from a models folder's fp32 graphs
    and manifest; `which` is "icam" or "fcpm"."""
    models_dir = Path(models_dir)
    meta = json.loads((models_dir / f"{which}.json").read_text())
    graphs = {"icam": ["icam_init", "icam_ref", "icam_decode"],
              "fcpm": ["fcpm_merge", "fcpm_back", "fcpm_fwd", "fcpm_fuse"]}[which]
    state = state_dict_from_onnx([models_dir / f"{g}.onnx" for g in graphs])
    if which == "icam":
        from .icam_net import ICAM, ICAMConfig
        model = ICAM(ICAMConfig.from_dict(meta["config"]))
    else:
        from .fcpm_net import FCPM, FCPMConfig
        model = FCPM(FCPMConfig.from_dict(meta["config"]))
    missing = sorted(set(model.state_dict()) - set(state))
    if missing:  # the exporter merges initializers of equal value (e.g. untrained LayerNorms)
        raise ValueError(f"{models_dir}: parameters not recoverable from the graphs: {', '.join(missing)} "
                         "(their values equal another parameter's and were merged at export)")
    model.load_state_dict(state, strict=True)  # nothing left over either
    st = {"model": model.state_dict(), "config": model.cfg.to_dict(), "step": meta.get("trained_steps", 0),
          "exposure_norm": meta.get("exposure_norm", True), "from_onnx": str(models_dir), "net": which,
          # named now: the folder's manifest changes when other weights are exported there later
          "source_checkpoint": meta.get("checkpoint")}
    if meta.get("soup"):  # mean weights of fine-tunes (vsvitm-soup): no step count of its own
        st["soup"] = meta["soup"]
    if meta.get("preflow_start"):  # the pre-flows these weights expect (vsvitm-export --homography-preflow)
        st["preflow_start"] = meta["preflow_start"]
    return st


def training_args(path, st: dict) -> dict | None:
    """The options of the training run that wrote checkpoint `path` (its config.json, beside it); None
    for a checkpoint rebuilt from exported graphs or one without that file."""
    run_cfg = Path(path).parent / "config.json"
    if st.get("from_onnx") or not run_cfg.exists():
        return None
    return json.loads(run_cfg.read_text()).get("args")


def source_checkpoint(st: dict, name: str) -> str | None:
    """For a checkpoint rebuilt from exported graphs (checkpoint_from_models), the training checkpoint
    those graphs came from; None for any other checkpoint. Rebuilds older than the "source_checkpoint"
    field fall back to their folder's manifest, which is right only until other weights go there."""
    if not st.get("from_onnx"):
        return None
    if "source_checkpoint" in st:
        return st["source_checkpoint"]
    manifest = Path(st["from_onnx"]) / f"{st.get('net', name)}.json"
    return json.loads(manifest.read_text()).get("checkpoint") if manifest.exists() else None
