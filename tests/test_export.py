"""ONNX export: ORT output matches torch at several sizes; IR version loadable by ORT; shipped models run."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")


def _sess(p):
    return ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from vsvitm.training.export import export_fcpm, export_icam
    from vsvitm.training.fcpm_net import FCPM
    from vsvitm.training.icam_net import ICAM
    torch.manual_seed(1)
    d = tmp_path_factory.mktemp("exp")
    icam, fcpm = ICAM().eval(), FCPM().eval()
    export_icam(icam, d, fp16=False)
    export_fcpm(fcpm, d, fp16=False)
    return d, icam, fcpm


@pytest.mark.parametrize("hw", [(64, 128), (192, 64)])
def test_icam_ort_matches_torch(exported, hw):
    d, icam, _ = exported
    h, w = hw
    g = torch.Generator().manual_seed(0)
    key, ref = torch.rand(1, 4, h, w, generator=g), torch.rand(1, 4, h, w, generator=g) * 2
    pf = torch.randn(1, 2, h, w, generator=g) * 3
    with torch.no_grad():
        y, _ = icam(key, [ref, ref], [pf, -pf])
        ev = icam.evidence(icam.encode(key, [ref, ref], [pf, -pf])[0])
    fl, gg = _sess(d / "icam_init.onnx").run(None, {"key": key.numpy()})
    s = _sess(d / "icam_ref.onnx")
    for p in (pf, -pf):
        fl, gg, _ = s.run(None, {"fl": fl, "g": gg, "ref": ref.numpy(), "preflow": p.numpy()})
    yo, evo = _sess(d / "icam_decode.onnx").run(None, {"key": key.numpy(), "fl": fl, "g": gg})
    assert np.abs(yo - y.numpy()).max() <= 1e-4 * max(1.0, float(y.abs().max()))
    # the reference evidence FCPM's gate reads: full resolution, in [0, 1), > 0 where a reference was added
    assert evo.shape == (1, 1, h, w) and np.abs(evo - ev.numpy()).max() < 1e-4
    assert 0.0 <= evo.min() and evo.max() < 1.0 and evo.mean() > 0.0


def test_fcpm_ort_matches_torch(exported):
    d, _, fcpm = exported
    h, w = 48, 80
    g = torch.Generator().manual_seed(0)
    cur, keys = torch.rand(1, 4, h, w, generator=g), torch.rand(1, 20, h, w, generator=g)
    ys, pf = torch.rand(1, 15, h, w, generator=g) * 4, torch.randn(1, 10, h, w, generator=g)
    valid = torch.tensor([1, 1, 1, 0, 0.0]).view(1, 5, 1, 1)
    with torch.no_grad():
        x = fcpm.merge(cur, keys, ys, pf, valid)
        hb = fcpm.back(x, cur, x, torch.zeros(1, 16, h, w), torch.zeros(1, 2, h, w))
        y = fcpm.fuse(hb, hb, x, cur)
    xo = _sess(d / "fcpm_merge.onnx").run(None, {"cur": cur.numpy(), "keys": keys.numpy(), "ys": ys.numpy(),
                                                 "preflows": pf.numpy(), "valid": valid.numpy()})[0]
    assert np.abs(xo - x.numpy()).max() < 1e-4
    ho = _sess(d / "fcpm_back.onnx").run(None, {"x": xo, "cur": cur.numpy(), "xn": xo, "h": np.zeros((1, 16, h, w), np.float32),
                                                "flow": np.zeros((1, 2, h, w), np.float32)})[0]
    yo = _sess(d / "fcpm_fuse.onnx").run(None, {"hf": ho, "hb": ho, "x": xo, "cur": cur.numpy()})[0]
    assert np.abs(yo - y.numpy()).max() <= 1e-4 * max(1.0, float(y.abs().max()))


def _merge_inputs(h, w, seed, flow_px):
    """Random merge inputs for 5 keys: cur, keys, ys (up to 4x SDR white), pre-flows (std flow_px)."""
    g = torch.Generator().manual_seed(seed)
    cur, keys = torch.rand(1, 4, h, w, generator=g), torch.rand(1, 20, h, w, generator=g)
    return cur, keys, torch.rand(1, 15, h, w, generator=g) * 4, torch.randn(1, 10, h, w, generator=g) * flow_px


def _clue_state(icam, key, log_mean: float, wsum: float, std: float = 0.0):
    """ICAM's init state with the clue accumulator set to a mean log radiance, weight sum and (when the state
    carries it) spread everywhere."""
    import torch.nn.functional as F
    fl, g = icam.init(key)
    c1 = icam.cfg.c1
    acc = F.pixel_shuffle(fl[:, c1:], 2)
    acc[:, :3] = log_mean * wsum
    acc[:, 3:4] = wsum
    if icam.spread:  # the transfer's own sums: the same here
        acc[:, 4:7] = log_mean * wsum
        acc[:, 7:8] = wsum
        acc[:, 8:11] = std * std * wsum
    return torch.cat([fl[:, :c1], F.pixel_unshuffle(acc, 2)], 1), g


def test_clue_transfer_exports_and_only_raises(tmp_path):
    """The clue transfer is in icam_decode: ORT matches torch; it raises Y towards the clue's mean only
    in the key's clipped channels, only where the weight sum and the mean pass their settings, never lowers Y."""
    from vsvitm.training.export import export_icam
    from vsvitm.training.icam_net import EPS, ICAM, ICAMConfig
    torch.manual_seed(3)
    icam = ICAM(ICAMConfig(c1=8, clue_transfer=0.25, clue_transfer_level=1.05)).eval()
    export_icam(icam, tmp_path, fp16=False)
    assert json.loads((tmp_path / "icam.json").read_text())["config"]["clue_transfer"] == 0.25
    h, w = 64, 64
    key = torch.rand(1, 4, h, w, generator=torch.Generator().manual_seed(4)) * 0.5
    key[:, :3, :, :32] = 1.0  # left half clipped in every channel
    s = _sess(tmp_path / "icam_decode.onnx")
    with torch.no_grad():
        for log_mean, wsum, raised in ((np.log(4.0), 1.0, True), (np.log(4.0), 0.2, False), (np.log(1.02), 1.0, False)):
            fl, g = _clue_state(icam, key, float(log_mean), wsum)
            y = icam.decode(key, fl, g)
            icam.cfg.clue_transfer = 0.0
            y_off = icam.decode(key, fl, g)
            icam.cfg.clue_transfer = 0.25
            yo = s.run(None, {"key": key.numpy(), "fl": fl.numpy(), "g": g.numpy()})[0]
            assert np.abs(yo - y.numpy()).max() <= 1e-4 * max(1.0, float(y.abs().max()))
            assert (y >= y_off - 1e-6).all()
            assert torch.equal(y[..., 32:], y_off[..., 32:])  # unclipped key: untouched
            if raised:  # full weight: Y = max(Y, mean) where the key clipped (the mean is of log(v + EPS))
                assert torch.allclose(y[..., :32], torch.maximum(y_off[..., :32], torch.tensor(4.0 - EPS)), rtol=1e-4)
            else:
                assert torch.equal(y, y_off)


def test_clue_transfer_spread_gate(tmp_path):
    """With a spread gate the state carries the references' spread (Welford update, checked here with two
    references of known log radiance); ORT matches torch; references that disagree transfer nothing."""
    import torch.nn.functional as F

    from vsvitm.training.export import export_icam
    from vsvitm.training.icam_net import EPS, ICAM, ICAMConfig
    torch.manual_seed(5)
    icam = ICAM(ICAMConfig(c1=8, clue_transfer=0.25, clue_transfer_spread=0.1)).eval()
    assert icam.clue_state == 48
    h, w = 64, 64
    key = torch.ones(1, 4, h, w)
    with torch.no_grad():  # trust every reference fully: w = sigmoid(30)
        icam.clue_w[-1].weight.zero_()
        icam.clue_w[-1].bias.fill_(30.0)
        fl, g = icam.init(key)
        feat = fl[:, :8]
        for v, dx in ((2.0, 0.0), (8.0, 0.0), (100.0, 40.0)):  # the third lands outside for x >= 24
            wr = torch.cat([torch.full((1, 3, h, w), v ** (1 / 2.2)), torch.zeros(1, 1, h, w)], 1)
            fup = torch.zeros(1, 2, h, w)
            fup[:, 0] = dx
            fl = icam._with_clue(fl, feat, feat, wr, fup)
        acc = F.pixel_shuffle(fl[:, 8:], 2)
        la, lb, lc = (float(np.log(v + EPS)) for v in (2.0, 8.0, 100.0))
        assert torch.allclose(acc[:, 3], torch.tensor(3.0), atol=1e-5)  # the network's clue counts every sample
        assert torch.allclose(acc[:, :3] / 3, torch.tensor((la + lb + lc) / 3), atol=1e-4)
        inner, outer = acc[..., :24], acc[..., 24:]  # the transfer's sums: inside the references only
        assert torch.allclose(inner[:, 7], torch.tensor(3.0), atol=1e-5) and torch.allclose(outer[:, 7], torch.tensor(2.0), atol=1e-5)
        assert torch.allclose(outer[:, 4:7] / 2, torch.tensor((la + lb) / 2), atol=1e-4)
        assert torch.allclose(outer[:, 8:11] / 2, torch.tensor(((lb - la) / 2) ** 2), atol=1e-4)  # weighted variance
        mean3 = (la + lb + lc) / 3
        var3 = ((la - mean3) ** 2 + (lb - mean3) ** 2 + (lc - mean3) ** 2) / 3
        assert torch.allclose(inner[:, 8:11] / 3, torch.tensor(var3), atol=1e-3)
    export_icam(icam, tmp_path, fp16=False)
    s = _sess(tmp_path / "icam_decode.onnx")
    key = torch.rand(1, 4, h, w, generator=torch.Generator().manual_seed(6)) * 0.5
    key[:, :3, :, :32] = 1.0
    with torch.no_grad():
        ys = {}
        for std in (0.05, 0.3):
            fl, g = _clue_state(icam, key, float(np.log(4.0)), 1.0, std)
            ys[std] = icam.decode(key, fl, g)
            yo = s.run(None, {"key": key.numpy(), "fl": fl.numpy(), "g": g.numpy()})[0]
            assert np.abs(yo - ys[std].numpy()).max() <= 1e-4 * max(1.0, float(ys[std].abs().max()))
        icam.cfg.clue_transfer = 0.0
        y_off = icam.decode(key, fl, g)
    assert torch.allclose(ys[0.05][..., :32], torch.maximum(y_off[..., :32], torch.tensor(4.0 - EPS)), rtol=1e-4)
    assert torch.equal(ys[0.3], y_off)


def test_fcpm_evidence_gate_exports(tmp_path):
    """With the evidence gate the merge graph takes one more input, and ORT matches torch."""
    from vsvitm.training.export import export_fcpm
    from vsvitm.training.fcpm_net import FCPM, FCPMConfig
    torch.manual_seed(2)
    fcpm = FCPM(FCPMConfig(evidence_gate=3.0)).eval()
    export_fcpm(fcpm, tmp_path, fp16=False)
    h, w = 48, 80
    cur, keys, ys, pf = _merge_inputs(h, w, 0, 1.0)
    valid = torch.tensor([1, 1, 1, 0, 0.0]).view(1, 5, 1, 1)
    ev = torch.rand(1, 5, h, w, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        x = fcpm.merge(cur, keys, ys, pf, valid, ev)
        assert not torch.allclose(x, fcpm.merge(cur, keys, ys, pf, valid, torch.zeros_like(ev)), atol=1e-3)
    s = _sess(tmp_path / "fcpm_merge.onnx")
    assert sorted(i.name for i in s.get_inputs()) == sorted(["cur", "keys", "ys", "preflows", "valid", "evidence"])
    xo = s.run(None, {"cur": cur.numpy(), "keys": keys.numpy(), "ys": ys.numpy(), "preflows": pf.numpy(),
                      "valid": valid.numpy(), "evidence": ev.numpy()})[0]
    assert np.abs(xo - x.numpy()).max() < 1e-4
    assert json.loads((tmp_path / "fcpm.json").read_text())["config"]["evidence_gate"] == 3.0


def test_ir_version_and_manifest(exported):
    import onnx
    d, _, _ = exported
    for p in d.glob("*.onnx"):
        assert onnx.load(str(p)).ir_version <= 10
    meta = json.loads((d / "icam.json").read_text())
    assert meta["format"] == 2 and meta["modulus"] == 64


def test_shipped_models_recover_highlights():
    from vsvitm.engine import MODEL_DIR
    if not (MODEL_DIR / "icam.json").exists():
        pytest.skip("no shipped models in this checkout")
    import vsvitm
    from vsvitm.vsnp import clip_from_array, clip_to_array
    from conftest import moving_clip
    frames = moving_clip(24, 64, 64)
    mode = "full" if (MODEL_DIR / "fcpm.json").exists() else "icam"
    out = clip_to_array(vsvitm.ITM(clip_from_array(frames), mode=mode), 0, 12)
    assert np.isfinite(out).all() and out.min() >= 0
    clipped = frames[:12].max(-1) >= 250
    assert out[clipped].max() > 1.0           # something above SDR white was reconstructed


def test_state_dict_recovered_from_onnx(tmp_path):
    """Every parameter comes back from the fp32 graphs, bit for bit (Linear weights included, which
    the exporter stores transposed under anonymous names)."""
    from vsvitm.training.export import checkpoint_from_models, export_fcpm, export_icam
    from vsvitm.training.fcpm_net import FCPM
    from vsvitm.training.icam_net import ICAM
    torch.manual_seed(2)
    icam, fcpm = ICAM().eval(), FCPM().eval()
    with torch.no_grad():  # trained weights: no two parameters equal (the exporter merges equal ones)
        for p in [*icam.parameters(), *fcpm.parameters()]:
            p.add_(torch.randn_like(p) * 0.01)
    d = tmp_path
    export_icam(icam, d, fp16=False)
    export_fcpm(fcpm, d, fp16=False)
    for which, model in (("icam", icam), ("fcpm", fcpm)):
        st = checkpoint_from_models(d, which)
        own = model.state_dict()
        assert st["model"].keys() == own.keys()
        for k, v in own.items():
            assert torch.equal(st["model"][k], v), k


def test_shipped_models_recoverable(tmp_path):
    from vsvitm.engine import MODEL_DIR
    if not (MODEL_DIR / "icam.json").exists():
        pytest.skip("no shipped models in this checkout")
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "vsvitm.training.checkpoint_from_onnx", "--out", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    st = torch.load(tmp_path / "icam.pt", weights_only=False)
    assert (st["step"] > 0 or st["soup"]) and st["config"]["c1"] > 0   # trained, or a mean of trained runs
    meta = json.loads((MODEL_DIR / "icam.json").read_text())
    assert st["source_checkpoint"] == meta["checkpoint"]
    # the pre-flows the weights expect travel with them: a re-export of the rebuilt checkpoint keeps them
    assert st.get("preflow_start") == meta.get("preflow_start")
    if meta.get("preflow_start") == "homography":
        out = tmp_path / "re"
        r = subprocess.run([sys.executable, "-m", "vsvitm.training.export_models", "--icam", str(tmp_path / "icam.pt"),
                            "--no-fp16", "--out", str(out)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-2000:]
        assert json.loads((out / "icam.json").read_text())["preflow_start"] == "homography"


def _check_fp16_pairs(folder):
    """Every *_fp16.onnx loads in ONNX Runtime, keeps fp32 inputs/outputs and agrees with its fp32 graph
    (ICAM Y compared in the log domain, where the networks work). Width 1152 > 1024: a sampling
    coordinate computed in fp16 would snap to whole pixels there."""
    from vsvitm.engine import FCPM_GRAPHS, ICAM_GRAPHS
    from conftest import random_feeds
    h, w = 64, 1152
    for g in ICAM_GRAPHS + FCPM_GRAPHS:
        if not (folder / f"{g}.onnx").exists():
            continue
        s32, s16 = _sess(folder / f"{g}.onnx"), _sess(folder / f"{g}_fp16.onnx")
        assert [o.type for o in s16.get_outputs()] == ["tensor(float)"] * len(s16.get_outputs()), g
        feeds = random_feeds(s32, h, w)
        for name, a, b in zip([o.name for o in s32.get_outputs()], s32.run(None, feeds), s16.run(None, feeds)):
            if g == "icam_decode":
                a, b = np.log(a + 1e-3), np.log(b + 1e-3)
            tol = 0.1 if g == "icam_ref" and name == "fl_out" else 0.05
            assert np.abs(a - b).max() <= tol * max(1.0, float(np.abs(a).max())), (g, name, float(np.abs(a - b).max()))


def test_fp16_graphs_load_and_match_fp32(tmp_path):
    """Regression: fp16 files once did not load at all (icam_ref, fcpm_merge, fcpm_back/fwd:
    'Type (tensor(float16)) ... does not match expected type (tensor(float))')."""
    from vsvitm.training.export import export_fcpm, export_icam
    from vsvitm.training.fcpm_net import FCPM
    from vsvitm.training.icam_net import ICAM
    torch.manual_seed(3)
    export_icam(ICAM().eval(), tmp_path, fp16=True)
    export_fcpm(FCPM().eval(), tmp_path, fp16=True)
    _check_fp16_pairs(tmp_path)


def test_shipped_fp16_graphs_load_and_match_fp32():
    from vsvitm.engine import MODEL_DIR
    if not (MODEL_DIR / "icam.json").exists():
        pytest.skip("no shipped models in this checkout")
    _check_fp16_pairs(MODEL_DIR)


@pytest.mark.parametrize("n", [1, 2])
def test_gather_warp_matches_grid_sample(n):
    """The export-time gather warp (nets_common.warp_impl) samples as grid_sample does: bilinear,
    border padding, flows far outside the frame; a NaN flow samples a pixel instead of raising."""
    from vsvitm.training.nets_common import GATHER_MIN_CH, warp, warp_impl
    g = torch.Generator().manual_seed(5)
    c, h, w = GATHER_MIN_CH, 23, 37
    x = torch.randn(n, c, h, w, generator=g)
    flow = torch.randn(n, 2, h, w, generator=g) * 20          # many samples clamp to the border
    a, narrow_grid = warp(x, flow), warp(x[:, :3], flow)
    with warp_impl("gather"):
        b = warp(x, flow)
        narrow = warp(x[:, :3], flow)                          # few channels keep grid_sample
        flow[0, :, 3, 4] = float("nan")
        nan_out = warp(x, flow)
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.equal(narrow, narrow_grid)
    assert torch.isfinite(nan_out).all()
    with pytest.raises(ValueError, match="unknown implementation"):
        with warp_impl("nearest"):
            pass


def test_fp32_graphs_gather_wide_features_fp16_keep_gridsample(exported, tmp_path):
    """The fp32 ICAM graph samples its wide features by Gather (CPU speed); the fp16 graphs are
    made from GridSample exports (their sampling coordinates stay fp32)."""
    import onnx
    from vsvitm.training.export import export_icam
    from vsvitm.training.icam_net import ICAM
    d, _, _ = exported
    ops32 = [n.op_type for n in onnx.load(str(d / "icam_ref.onnx")).graph.node]
    assert "Gather" in ops32 and "GridSample" in ops32           # features by Gather, the 4-channel frame by GridSample
    export_icam(ICAM().eval(), tmp_path, fp16=True)
    ops16 = [n.op_type for n in onnx.load(str(tmp_path / "icam_ref_fp16.onnx")).graph.node]
    assert ops16.count("GridSample") > ops32.count("GridSample")
    assert not list(tmp_path.glob("*_grid.onnx"))               # the temporary GridSample exports are removed


def test_warp_planes_matches_training_warp():
    """flow.warp_planes (OpenCV, the engine's CPU state warp) samples as nets_common.warp does,
    including flows far outside the frame; NaN flows give finite samples."""
    from vsvitm.flow import warp_planes
    from vsvitm.training.nets_common import warp
    rng = np.random.default_rng(2)
    x = rng.normal(0, 1, (1, 16, 37, 53)).astype(np.float32)
    flow = rng.normal(0, 15, (1, 2, 37, 53)).astype(np.float32)
    ref = warp(torch.from_numpy(x), torch.from_numpy(flow)).numpy()
    np.testing.assert_allclose(warp_planes(x, flow, np.float32), ref, atol=1e-4)
    # a band of output rows (the engine warps band by band) samples from the whole frame
    whole = warp_planes(x, flow, np.float32)
    for rows in ((11, 30), (0, 5), (30, 37)):
        np.testing.assert_allclose(warp_planes(x, flow, np.float32, rows), whole[..., rows[0]:rows[1], :], atol=1e-5)
    half = warp_planes(x.astype(np.float16), flow)
    assert half.dtype == np.float16 and np.abs(half - ref).max() < 5e-3
    flow[0, :, 5, 7] = np.nan
    flow[0, 0, 9, 9] = 1e30
    assert np.isfinite(warp_planes(x, flow, np.float32)).all()


@pytest.mark.parametrize("n_keys", [5, 3])
def test_split_merge_graphs_match_torch_merge(tmp_path, n_keys):
    """The engine's CPU merge (OpenCV pooling and warps around fcpm_merge_correct, OpenCV warps,
    fcpm_merge_mix) = FCPM.merge, with the evidence gate; with 3 keys the last two slots repeat the
    third (as Engine._merge fills them) and are made once. An FCPM with the flow cue keeps the
    one-graph merge only; one without the flow correction merges by the pre-flows."""
    from vsvitm import engine
    from vsvitm.training.export import export_fcpm
    from vsvitm.training.fcpm_net import FCPM, FCPMConfig
    torch.manual_seed(4)
    h, w = 40, 72
    cur, keys, ys, pf = _merge_inputs(h, w, 1, 4.0)
    ev = torch.rand(1, 5, h, w)
    for j in range(n_keys, 5):  # the slots past the frame's keys
        last = n_keys - 1
        keys[:, 4 * j: 4 * j + 4], ys[:, 3 * j: 3 * j + 3] = keys[:, 4 * last: 4 * last + 4], ys[:, 3 * last: 3 * last + 3]
        pf[:, 2 * j: 2 * j + 2], ev[:, j] = pf[:, 2 * last: 2 * last + 2], ev[:, last]
    valid = (torch.arange(5) < n_keys).float().view(1, 5, 1, 1)
    for corrects in (True, False):
        fcpm = FCPM(FCPMConfig(evidence_gate=10.0, flow_correction=corrects)).eval()
        d = tmp_path / f"c{int(corrects)}"
        export_fcpm(fcpm, d, fp16=False)
        assert (d / f"{engine.MERGE_CORRECT}.onnx").exists() == corrects
        with torch.no_grad():
            ref = fcpm.merge(cur, keys, ys, pf, valid, ev).numpy()
        eng = engine.Engine.__new__(engine.Engine)  # only what _merge_split uses
        eng.fcpm_keys, eng.merge_corrects = 5, corrects
        eng.sess = {n: _sess(d / f"{n}.onnx") for n in engine.SPLIT_MERGE + ((engine.MERGE_CORRECT,) if corrects else ())}
        eng._run = lambda n, feeds, eng=eng: eng.sess[n].run(None, feeds)
        out = eng._merge_split(cur.numpy(), valid.numpy(), [keys.numpy(), ys.numpy(), pf.numpy().copy(), ev.numpy()])
        np.testing.assert_allclose(out, ref, atol=2e-4)
    cue = tmp_path / "cue"
    export_fcpm(FCPM(FCPMConfig(flow_cue=True)).eval(), cue, fp16=False)
    assert not (cue / "fcpm_merge_mix.onnx").exists() and (cue / "fcpm_back_cpu.onnx").exists()


@pytest.mark.parametrize("hw", [(64, 128), (192, 64)])
def test_split_ref_graphs_match_torch_ref_step(exported, hw):
    """icam_ref_a..d with OpenCV warps between (the engine's CPU path, Engine._ref_split) = ICAM.ref_step
    in torch, with flows reaching past the frame's edges; an ICAM without the deformable alignment
    (an ablation) exports no split graphs and keeps the one-graph step."""
    from vsvitm import engine
    from vsvitm.training.export import export_icam
    from vsvitm.training.icam_net import ICAM, ICAMConfig
    d, icam, _ = exported
    h, w = hw
    g = torch.Generator().manual_seed(3)
    key, ref = torch.rand(1, 4, h, w, generator=g), torch.rand(1, 4, h, w, generator=g) * 2
    pf = torch.randn(1, 2, h, w, generator=g) * 20
    with torch.no_grad():
        fl, gg = icam.init(key)
        want_fl, want_g, _ = icam.ref_step(fl, gg, ref, pf)
    eng = engine.Engine.__new__(engine.Engine)  # only what _ref_split uses
    eng.sess = {n: _sess(d / f"{n}.onnx") for n in engine.SPLIT_REF}
    eng._run = lambda n, feeds: eng.sess[n].run(None, feeds)
    got_fl, got_g = eng._ref_split({"fl": fl.numpy(), "g": gg.numpy(), "ref": ref.numpy(), "preflow": pf.numpy()})
    np.testing.assert_allclose(got_fl, want_fl.numpy(), atol=2e-4 * max(1.0, float(want_fl.abs().max())))
    np.testing.assert_allclose(got_g, want_g.numpy(), atol=2e-4 * max(1.0, float(want_g.abs().max())))
    plain = d / "plain"
    export_icam(ICAM(ICAMConfig(deformable=False)).eval(), plain, fp16=False)
    assert (plain / "icam_ref.onnx").exists() and not (plain / "icam_ref_a.onnx").exists()


def test_split_ref_graphs_match_torch_with_the_transfer_sums(tmp_path):
    """With the clue transfer's spread gate the state carries the transfer's own sums (samples inside the
    reference only): the CPU split graphs (icam_ref_a..d, OpenCV warps) and the one-graph step still equal torch
    over two references whose flows reach past the frame's edges, and the transfer's weight is lower than the
    clue path's where they do."""
    import torch.nn.functional as F

    from vsvitm import engine
    from vsvitm.training.export import export_icam
    from vsvitm.training.icam_net import ICAM, ICAMConfig
    torch.manual_seed(7)
    icam = ICAM(ICAMConfig(c1=8, align=8, clue_transfer=0.125, clue_transfer_spread=0.1)).eval()
    export_icam(icam, tmp_path, fp16=True)
    h, w = 64, 128
    g = torch.Generator().manual_seed(8)
    key = torch.rand(1, 4, h, w, generator=g)
    refs = [torch.rand(1, 4, h, w, generator=g) * 2 for _ in range(2)]
    pfs = [torch.randn(1, 2, h, w, generator=g) * 20 for _ in range(2)]
    eng = engine.Engine.__new__(engine.Engine)
    eng.sess = {n: _sess(tmp_path / f"{n}.onnx") for n in engine.SPLIT_REF}
    eng._run = lambda n, feeds: eng.sess[n].run(None, feeds)
    one = _sess(tmp_path / "icam_ref.onnx")
    with torch.no_grad():
        fl, gg = icam.init(key)
    got, got1 = (fl.numpy(), gg.numpy()), (fl.numpy(), gg.numpy())
    for ref, pf in zip(refs, pfs):
        with torch.no_grad():
            fl, gg, _ = icam.ref_step(fl, gg, ref, pf)
        got = eng._ref_split({"fl": got[0], "g": got[1], "ref": ref.numpy(), "preflow": pf.numpy()})
        got1 = one.run(None, {"fl": got1[0], "g": got1[1], "ref": ref.numpy(), "preflow": pf.numpy()})[:2]
        for a in (got[0], got1[0]):
            np.testing.assert_allclose(a, fl.numpy(), atol=2e-4 * max(1.0, float(fl.abs().max())))
    # the fp16 graphs load (ONNX's Range has no float16 form) and run
    fl16, g16 = _sess(tmp_path / "icam_init_fp16.onnx").run(None, {"key": key.numpy()})
    out16 = _sess(tmp_path / "icam_ref_fp16.onnx").run(None, {"fl": fl16, "g": g16, "ref": refs[0].numpy(),
                                                             "preflow": pfs[0].numpy()})
    assert np.isfinite(out16[0].astype(np.float32)).all()
    acc = F.pixel_shuffle(fl[:, 8:], 2)
    assert acc.shape[1] == 12 and (acc[:, 7] <= acc[:, 3] + 1e-5).all() and (acc[:, 7] < acc[:, 3] - 0.1).any()
