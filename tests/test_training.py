"""Training mechanics: the log-domain heads learn, and references carry information ICAM uses.

These would have caught the first head (Y = f^-1(L) + exp(r)), whose gradient vanished and whose
training collapsed to Y = f^-1(L).
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import tiny_stills  # noqa: E402
from vsvitm.training.icam_net import EPS, ICAM, ICAMConfig  # noqa: E402
from vsvitm.training.losses import log_l1  # noqa: E402


def _scene(seed=0, size=64):
    """Key frame clipped in its top half; a reference (already at the key's exposure, so values above
    1 are what the key lost) sees the true radiance there; ground truth = that radiance."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.arange(size // 2.0), torch.arange(float(size)), indexing="ij")
    ph = torch.rand(2, generator=g) * 6.3
    pattern = 0.5 + 0.5 * torch.sin(x / 2.5 + ph[0]) * torch.sin(y / 1.8 + ph[1])  # texture a key cannot guess
    hdr = 0.2 + torch.rand(1, 3, size, size, generator=g) * 0.5
    hdr[:, :, : size // 2] = 1.2 + 8.0 * pattern                                    # 1.2 .. 9.2, clipped in the key
    lin = hdr.clamp(0, 1)
    code = lin ** (1 / 2.2)
    alpha = ((code.amax(1, keepdim=True) - 0.95) / 0.05).clamp(0, 1)
    key = torch.cat([code, alpha], 1)
    ref = torch.cat([hdr.clamp(max=64) ** (1 / 2.2), torch.zeros_like(alpha)], 1)
    return key, ref, hdr, alpha


def _train(use_ref: bool, steps=60):
    torch.manual_seed(0)
    m = ICAM(ICAMConfig(c1=8, c2=8, c3=8, c4=16, offsets=2))
    torch.nn.init.zeros_(m.d0[-1].weight)   # as vsvitm-train-icam starts: Y = f^-1(L)
    torch.nn.init.zeros_(m.d0[-1].bias)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    key, ref, hdr, alpha = _scene()
    refs, flows = ([ref], [torch.zeros(1, 2, 64, 64)]) if use_ref else ([], [])
    losses = []
    for _ in range(steps):
        logy, _ = m(key, refs, flows, log=True)
        loss = log_l1(logy, hdr, alpha)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return m, losses, (key, refs, flows, hdr, alpha)


def test_head_starts_at_linear_and_decode_is_bounded():
    m = ICAM(ICAMConfig(c1=8, c2=8, c3=8, c4=16, offsets=2))
    torch.nn.init.zeros_(m.d0[-1].weight)
    torch.nn.init.zeros_(m.d0[-1].bias)
    key, _, _, _ = _scene()
    lin = key[:, :3] ** 2.2
    with torch.no_grad():
        logy, _ = m(key, [], [], log=True)
        y, _ = m(key, [], [])
    assert torch.allclose(logy, torch.log(lin + EPS), atol=1e-5)
    assert torch.all(y >= lin - 1e-6) and torch.isfinite(y).all()


def test_log_head_learns_highlights_and_uses_the_reference():
    _, single, _ = _train(use_ref=False)
    m, with_ref, (key, refs, flows, hdr, alpha) = _train(use_ref=True)
    # the loss falls: the gradient does not vanish at the start (Y = f^-1(L))
    assert single[-1] < 0.8 * single[0]
    assert with_ref[-1] < 0.6 * with_ref[0]
    # a reference that saw the clipped region is worth a lot more than guessing from the key alone
    assert with_ref[-1] < 0.5 * single[-1]
    with torch.no_grad():
        y, _ = m(key, refs, flows)
    top = alpha[:, :, :32] > 0.99
    assert float(y[:, :, :32][top.expand(-1, 3, -1, -1)].mean()) > 1.5   # recovered above SDR white
    assert np.isfinite(y.numpy()).all()


def test_highlight_knee_bounds_the_peak_and_keeps_the_rest():
    from vsvitm.training.sources import Source, highlight_knee, pick_source
    rng = np.random.default_rng(0)
    img = np.exp(rng.normal(0, 2.0, (64, 64, 3))).astype(np.float32)
    src = Source("still", [img])
    out = highlight_knee(src, np.random.default_rng(1), stops=(1.0, 1.0), percentile=(90.0, 90.0))
    c = float(np.percentile(img[::4, ::4].max(axis=-1), 90.0))
    m, m2 = img.max(-1), out.frames[0].max(-1)
    low = m <= c
    assert np.allclose(out.frames[0][low], img[low])          # below the knee: untouched
    assert m2.max() < 2.0 * c and m2.max() > c                 # above: rolls off towards c * 2^1
    order = np.argsort(m.ravel())                              # monotonic: brighter stays brighter
    assert np.all(np.diff(m2.ravel()[order]) >= -1e-6)
    ratio = out.frames[0][~low] / img[~low]                    # hue kept: one gain per pixel
    assert np.allclose(ratio, ratio[:, :1], rtol=1e-5)
    vid = Source("video", [img, img * 0.5])
    picks = [pick_source([src, vid], np.random.default_rng(i), video_weight=0.9).name for i in range(200)]
    assert 0.8 < picks.count("video") / 200 < 0.97


def test_overshoot_weighted_log_loss_is_a_quantile_loss():
    h = torch.full((1, 3, 2, 2), 1.0)
    w = torch.ones(1, 1, 2, 2)
    base = torch.log(h + EPS)
    assert torch.isclose(log_l1(base + 0.5, h, w, overshoot=2.0), torch.tensor(1.0))   # above: x2
    assert torch.isclose(log_l1(base - 0.5, h, w, overshoot=2.0), torch.tensor(0.5))   # below: x1
    assert torch.isclose(log_l1(base + 0.5, h, w), log_l1(base - 0.5, h, w))           # default: plain L1
    # the best constant for 1..9 under overshoot 2 is the 1/3 quantile, not the median
    vals = torch.arange(1.0, 10.0).view(1, 1, 3, 3).expand(1, 3, 3, 3)
    c = torch.zeros((), requires_grad=True)
    opt = torch.optim.SGD([c], lr=0.05)
    for _ in range(600):
        opt.zero_grad()
        log_l1(c.expand(1, 3, 3, 3), torch.exp(vals) - EPS, torch.ones(1, 1, 3, 3), overshoot=2.0).backward()
        opt.step()
    assert 3.0 <= float(c.detach()) <= 4.0


def _fcpm_inputs(seed=0, size=32, keys=5):
    g = torch.Generator().manual_seed(seed)
    cur = torch.rand(1, 4, size, size, generator=g)
    ks = torch.rand(1, 4 * keys, size, size, generator=g)
    ys = torch.rand(1, 3 * keys, size, size, generator=g) * 4
    flows = torch.randn(1, 2 * keys, size, size, generator=g)
    valid = torch.ones(1, keys, 1, 1)
    return cur, ks, ys, flows, valid


def test_fcpm_fallback_upgrade_keeps_the_old_merge():
    from vsvitm.training.fcpm_net import FCPM, FCPMConfig
    assert FCPMConfig.from_dict({"keys": 5}).fallback is False          # old checkpoints load as they were
    torch.manual_seed(0)
    old = FCPM(FCPMConfig(hidden=8, mask_ch=8, fallback=False)).eval()
    new = FCPM(FCPMConfig(hidden=8, mask_ch=8)).eval()
    new.load_compatible(old.state_dict(), fallback_bias=-1e4)          # fallback never chosen
    x = _fcpm_inputs()
    with torch.no_grad():
        assert torch.allclose(old.merge(*x), new.merge(*x), atol=1e-5)
        new.mask.out.bias[-1] = 1e4                                    # fallback always chosen
        cur = x[0]
        assert torch.allclose(new.merge(*x), torch.log(cur[:, :3].clamp(0, 1) ** 2.2 + EPS), atol=1e-5)


def test_fcpm_flow_cue_upgrade_keeps_the_old_merge():
    """A model without the flow cue loads into one with it and merges exactly as before (the cue's
    input channels start at zero weight); once weighted, the cue changes the masks."""
    from vsvitm.training.fcpm_net import FCPM, FCPMConfig
    assert FCPMConfig.from_dict({"keys": 5, "fallback": True}).flow_cue is False
    torch.manual_seed(0)
    old = FCPM(FCPMConfig(hidden=8, mask_ch=8, flow_cue=False)).eval()
    new = FCPM(FCPMConfig(hidden=8, mask_ch=8, flow_cue=True)).eval()
    new.load_compatible(old.state_dict())
    x = _fcpm_inputs()
    with torch.no_grad():
        assert torch.allclose(old.merge(*x), new.merge(*x), atol=1e-6)
        new.mask.local[0].weight[:, -5:] = 1.0
        assert not torch.allclose(old.merge(*x), new.merge(*x), atol=1e-3)
        # the cue is exactly zero for a key that is frame t itself (zero pre-flow)
        cur, ks, ys, flows, valid = x
        flows = flows.clone()
        flows[:, :2] = 0
        new.mask.local[0].weight[:, -5:] = 0.0
        new.mask.local[0].weight[:, -5] = 100.0        # only key 0's cue: no effect when its flow is zero
        a = new.merge(cur, ks, ys, flows, valid)
        new.mask.local[0].weight[:, -5] = 0.0
        assert torch.allclose(a, new.merge(cur, ks, ys, flows, valid), atol=1e-5)


def test_fcpm_agreement_cue():
    """The agreement cue loads as a no-op into an older model, and it is zero where all valid keys
    carry the same result to the same place (so weighting it changes nothing there)."""
    from vsvitm.training.fcpm_net import FCPM, FCPMConfig
    torch.manual_seed(0)
    old = FCPM(FCPMConfig(hidden=8, mask_ch=8)).eval()
    new = FCPM(FCPMConfig(hidden=8, mask_ch=8, flow_cue=True, agree_cue=True)).eval()
    new.load_compatible(old.state_dict())
    cur, ks, ys, flows, valid = _fcpm_inputs()
    with torch.no_grad():
        assert torch.allclose(old.merge(cur, ks, ys, flows, valid), new.merge(cur, ks, ys, flows, valid), atol=1e-6)
        # five copies of one key (same frame, same result, same flow): every flow correction and warp is the same
        same_ks, same_ys, zero = ks[:, :4].repeat(1, 5, 1, 1), ys[:, :3].repeat(1, 5, 1, 1), torch.zeros_like(flows)
        valid3 = torch.tensor([1, 1, 1, 0, 0.0]).view(1, 5, 1, 1)
        a = new.merge(cur, same_ks, same_ys, zero, valid3)
        new.mask.local[0].weight[:, -5:] = 50.0         # the agreement channels (last 5)
        assert torch.allclose(a, new.merge(cur, same_ks, same_ys, zero, valid3), atol=1e-5)
        assert not torch.allclose(new.merge(cur, ks, ys, zero, valid3), old.merge(cur, ks, ys, zero, valid3), atol=1e-3)


def test_fcpm_evidence_gate():
    """The gate has no weights: with no evidence it merges exactly as the model without it; where
    references back every key fully it removes the fallback; it never changes the key masks' ratios."""
    from vsvitm.training.fcpm_net import FCPM, FCPMConfig
    assert FCPMConfig.from_dict({"keys": 5, "fallback": True}).evidence_gate == 0.0
    torch.manual_seed(0)
    plain = FCPM(FCPMConfig(hidden=8, mask_ch=8)).eval()
    gated = FCPM(FCPMConfig(hidden=8, mask_ch=8, evidence_gate=10.0)).eval()
    gated.load_state_dict(plain.state_dict())
    x = _fcpm_inputs()
    ev0 = torch.zeros(1, 5, *x[0].shape[2:])
    b0 = float(plain.mask.out.bias[-1].detach())
    with torch.no_grad():
        with pytest.raises(ValueError, match="evidence"):
            gated.merge(*x)
        assert torch.allclose(plain.merge(*x), gated.merge(*x, ev0), atol=1e-6)
        plain.mask.out.bias[-1] = 1e4                                   # fallback always chosen
        gated.mask.out.bias[-1] = 1e4
        fb = torch.log(x[0][:, :3].clamp(0, 1) ** 2.2 + EPS)
        assert torch.allclose(plain.merge(*x), fb, atol=1e-5)
        assert torch.allclose(gated.merge(*x, ev0), fb, atol=1e-5)
        gated.mask.out.bias[-1] = b0                                    # full evidence: as if never chosen
        plain.mask.out.bias[-1] = -1e4
        assert torch.allclose(gated.merge(*x, torch.ones_like(ev0)), plain.merge(*x), atol=1e-4)


def test_fcpm_bad_flow_perturbs_only_other_keys_preflows():
    """--bad-flow: the key results and frames stay the same, only pre-flows to other frames move."""
    from vsvitm.training.fcpm_data import FCPMBatches
    from vsvitm.training.sources import Source
    icam = ICAM(ICAMConfig(c1=8, c2=8, c3=8, c4=16, offsets=2)).eval()
    yy, xx = np.mgrid[0:160, 0:200].astype(np.float32)
    img = 0.2 + 0.1 * np.sin(xx / 7)[..., None] * np.cos(yy / 5)[..., None] + np.zeros((1, 1, 3), np.float32)
    img[40:90, 80:150] *= 20.0                          # a bright region the LDR frames clip
    src = [Source("test-still", [img.astype(np.float32)])]
    make = lambda p: FCPMBatches(src, icam, batch=1, size=64, run=3, seed=0, n_frames=40, max_refs=1,
                                 p_bad_flow=p).sample(np.random.default_rng(3))
    a, b = make(0.0), make(1.0)
    for k in ("cur", "ys", "hdr", "alpha", "nflow_b", "nflow_f"):
        np.testing.assert_array_equal(a[k], b[k])
    pf_a, pf_b = a["preflows"].reshape(3, 5, 2, 64, 64), b["preflows"].reshape(3, 5, 2, 64, 64)
    same = np.all(pf_a == pf_b, axis=(2, 3, 4))
    self_key = np.all(pf_a == 0, axis=(2, 3, 4))      # frame t is its own key: zero flow, never perturbed
    assert np.array_equal(same, self_key) and not same.all()
    # each key result comes with ICAM's reference evidence, which a gated merge trains with
    ev = a["evidence"]
    assert ev.shape == (3, 5, 64, 64) and ev.min() >= 0.0 and ev.max() < 1.0 and ev.max() > 0.0
    from vsvitm.training.fcpm_data import run_fcpm
    from vsvitm.training.fcpm_net import FCPM, FCPMConfig
    gated = FCPM(FCPMConfig(hidden=8, mask_ch=8, evidence_gate=3.0))
    batch = {k: torch.from_numpy(v)[:, None] for k, v in a.items()}   # [T, B=1, C, H, W]
    logy = run_fcpm(gated, batch, log=True)
    assert logy.shape == (3, 1, 3, 64, 64) and torch.isfinite(logy).all()
    logy.mean().backward()


def test_pick_key_fits_the_reference_count():
    """Training draws keys that have n_refs run-time references inside the sequence: 12 at stride 15
    in 181 frames fit only at frame 90 (before, such draws were thrown away with their sequence)."""
    from vsvitm.training.icam_data import pick_key, reference_offsets_inside
    assert reference_offsets_inside(20, 181) == [5, 35, 50, 65, 80, 95, 110]
    rng = np.random.default_rng(0)
    for n_refs in (0, 4, 11, 12):
        for _ in range(20):
            key, cands = pick_key(rng, 181, n_refs)
            assert len(cands) >= n_refs and cands == reference_offsets_inside(key, 181)
    assert {pick_key(rng, 181, 12)[0] for _ in range(10)} == {90}
    with pytest.raises(ValueError, match="max-refs"):
        pick_key(rng, 60, 12)


def test_icam_batches_preflow_preset(tmp_path):
    """vsvitm-train-icam --preflow: the training pre-flows come from the DIS preset asked for; the default
    stays FAST, what the shipped weights were trained on."""
    import cv2

    from vsvitm.training.exr import write_exr
    from vsvitm.training.icam_data import ICAMBatches
    from vsvitm.training.sources import load_sources

    rng = np.random.default_rng(1)
    img = 0.18 * np.exp2(2.0 * rng.standard_normal((24, 32, 3))).astype(np.float32)
    write_exr(tmp_path / "s.exr", cv2.resize(img, (192, 144), interpolation=cv2.INTER_CUBIC).clip(1e-3, None))
    sources = load_sources(tmp_path, split="train")

    def flows(**kw):
        ds = ICAMBatches(sources, 1, 64, 1, seed=3, **kw)
        step = next(s for s in range(50) if ds.batch_at(s)["flows"])  # a step that draws a reference
        return ds.batch_at(step)["flows"][0].numpy()
    fast, medium = flows(preflow="fast"), flows(preflow="medium")
    assert np.array_equal(flows(), fast)
    assert not np.array_equal(fast, medium) and np.isfinite(medium).all()
    with pytest.raises(ValueError, match="preflow must be one of"):
        ICAMBatches(sources, 1, 64, 1, seed=3, preflow="ultrafast")


def _kill_channels(net, groups, dead):
    """Zero every producer's rows of the `dead` channels of each group: those channels are then zero
    everywhere (LeakyReLU(0) = 0), so a network without them computes exactly the same."""
    sd = net.state_dict()
    with torch.no_grad():
        for name, g in groups.items():
            for p in g.producers:
                sd[p + ".weight"][dead[name]] = 0
                sd[p + ".bias"][dead[name]] = 0
    net.load_state_dict(sd)


def _fcpm_chunk(seed=0, t=3, size=32):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.rand(*s, generator=g)  # noqa: E731
    return {"cur": r(t, 1, 4, size, size), "keys": r(t, 1, 20, size, size), "ys": 2 * r(t, 1, 15, size, size),
            "evidence": 0.5 * r(t, 1, 5, size, size), "preflows": 4 * r(t, 1, 10, size, size) - 2,
            "valid": torch.ones(t, 1, 5, 1, 1), "nflow_b": 2 * r(t, 1, 2, size, size) - 1,
            "nflow_f": 2 * r(t, 1, 2, size, size) - 1}


@pytest.mark.parametrize("net", ["icam", "fcpm"])
def test_pruning_drops_the_channels_that_do_nothing_and_keeps_the_function(net):
    """prune.py: a group's dead channels (zero producer rows) score zero and are the ones dropped, and every
    consumer's columns are cut to match, so the narrow network equals the wide one exactly. A wrong
    offset in any group's consumer list reads another channel and fails this. Same width: the identity."""
    import dataclasses

    from vsvitm.training.fcpm_data import run_fcpm
    from vsvitm.training.fcpm_net import FCPM, FCPMConfig
    from vsvitm.training.prune import fcpm_groups, fcpm_widths, icam_groups, icam_widths, prune

    torch.manual_seed(1)
    if net == "icam":
        cfg = ICAMConfig(c1=12, c2=8, c3=8, c4=16, offsets=2, align=10)
        wide, groups_of, widths_of = ICAM(cfg), icam_groups, icam_widths
        narrow_cfg = dataclasses.replace(cfg, c1=8, align=6)
        g = torch.Generator().manual_seed(2)
        key = torch.rand(1, 4, 64, 64, generator=g)
        refs = [torch.rand(1, 4, 64, 64, generator=g) for _ in range(2)]
        flows = [4 * torch.rand(1, 2, 64, 64, generator=g) - 2 for _ in range(2)]
        run = lambda m: m(key, refs, flows, log=True)[0]  # noqa: E731
    else:
        cfg = FCPMConfig(hidden=12, mask_ch=10, corr=9, evidence_gate=10.0)
        wide, groups_of, widths_of = FCPM(cfg), fcpm_groups, fcpm_widths
        narrow_cfg = dataclasses.replace(cfg, hidden=8, mask_ch=6, corr=5)
        chunk = _fcpm_chunk()
        run = lambda m: run_fcpm(m, chunk, log=True)  # noqa: E731
    wide.eval()
    same = type(wide)(cfg).eval()
    prune(wide, same, groups_of(cfg), widths_of(cfg), run)
    with torch.no_grad():
        torch.testing.assert_close(run(same), run(wide), rtol=0, atol=0)
    groups = groups_of(cfg)
    widths = widths_of(narrow_cfg)
    rng = np.random.default_rng(3)
    dead = {n: sorted(rng.choice(g.size, g.size - widths[n], replace=False).tolist()) for n, g in groups.items()}
    _kill_channels(wide, groups, dead)
    narrow = type(wide)(narrow_cfg).eval()
    keep = prune(wide, narrow, groups_of(cfg), widths, run)
    for n, g in groups.items():
        assert keep[n] == sorted(set(range(g.size)) - set(dead[n])), n
    with torch.no_grad():
        torch.testing.assert_close(run(narrow), run(wide), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="cannot keep"):
        prune(wide, narrow, groups_of(cfg), {"c1" if net == "icam" else "hf": 99}, run)


def test_reference_informs_where_it_is_unclipped_or_darker():
    """icam_data.reference_informs: a reference exposed like the key informs where it is unclipped, sampled
    through the flow; one DARKER or more darker informs wherever it lands; nothing where it does not land."""
    from vsvitm.training.icam_data import DARKER, reference_informs

    h, w = 8, 12
    alpha_ref = np.zeros((h, w), np.float32)
    alpha_ref[:, 6:] = 1.0  # the reference's right half is clipped
    flow = np.zeros((h, w, 2), np.float32)
    flow[..., 0] = 3.0      # key pixel x is seen at x + 3 in the reference
    valid = np.ones((h, w), bool)
    valid[:, :1] = False
    got = reference_informs(alpha_ref, flow, valid, ratio=1.0)
    assert np.allclose(got[:, 1:3], 1.0) and np.allclose(got[:, 3:], 0.0) and np.allclose(got[:, 0], 0.0)
    dark = reference_informs(alpha_ref, flow, valid, ratio=DARKER)
    assert np.array_equal(dark, valid.astype(np.float32))
    assert np.allclose(reference_informs(alpha_ref, flow, valid, ratio=0.5), got)  # a brighter ref clips as much


def test_icam_batches_blind_mask(tmp_path):
    """ICAMBatches' "blind": all ones without references, in [0, 1] with them, and 1 wherever the key's clipped
    pixels get nothing from any reference -- checked against reference_informs on the sample's own frames."""
    from vsvitm.curves import overexposure_mask
    from vsvitm.flow import DISFlow
    from vsvitm.training.icam_data import ICAMBatches, make_sample, pick_key, reference_informs
    from vsvitm.training.sources import load_sources
    from vsvitm.training.synth import synth_sequence

    sources = load_sources(tiny_stills(tmp_path), split="train")
    ds = ICAMBatches(sources, 2, 64, 2, seed=5)
    seen = set()
    for step in range(40):
        b = ds.batch_at(step)
        bl = b["blind"].numpy()
        assert bl.shape == b["alpha"].shape and np.isfinite(bl).all() and bl.min() >= 0 and bl.max() <= 1
        if not b["refs"]:
            assert np.all(bl == 1.0)
        seen.add(len(b["refs"]))
    assert seen == {0, 1, 2}
    seq = synth_sequence(sources[0], 61, (64, 64), seed=9)
    key, refs = pick_key(np.random.default_rng(0), 61, 2)
    s = make_sample(seq, key, refs[:2], DISFlow("fast"))
    ldr = seq.render(refs[:2])["ldr"].astype(np.float32) / 255.0
    want = np.ones((64, 64), np.float32)
    for j, r in enumerate(refs[:2]):
        gt, valid = seq.flow(key, r)
        want *= 1.0 - reference_informs(overexposure_mask(ldr[j])[..., 0], gt, valid, float(seq.exposure[key] / seq.exposure[r]))
    assert np.allclose(s["blind"][0], want)


def test_log_l1_to_norm_counts_a_partial_term_by_its_share():
    from vsvitm.training.losses import log_l1_to

    y, t = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)
    w = torch.ones(1, 1, 4, 4)
    part = w.clone()
    part[..., :2] = 0  # half the pixels
    assert torch.isclose(log_l1_to(y, t, part), torch.tensor(1.0))
    assert torch.isclose(log_l1_to(y, t, part, norm=w), torch.tensor(0.5))


def test_flat_exposure_locks_every_frame_to_the_key_and_only_draws_when_asked(tmp_path):
    """--flat-exposure P (vsvitm-train-icam, icam_data.flatten_exposure): with probability P a training sequence keeps the key frame's exposure on every
    frame (its references then see only what motion brings into view); P = 0 draws nothing, so earlier runs repeat."""
    from vsvitm.training.icam_data import ICAMBatches, flatten_exposure
    from vsvitm.training.sources import load_sources
    from vsvitm.training.synth import synth_sequence

    data = tiny_stills(tmp_path)
    sources = load_sources(data, split="train")
    seq = synth_sequence(sources[0], 61, (64, 64), seed=9)
    assert np.ptp(np.log(seq.exposure)) > 0.05  # auto-exposure moved: the test would not see a change otherwise
    key = 30
    before = seq.render([key])
    flatten_exposure(seq, key)
    assert np.all(seq.exposure == seq.exposure[key])
    after = seq.render([key, 0, 60])
    assert np.array_equal(after["ldr"][0], before["ldr"][0])  # the key frame itself is unchanged
    for j, t in ((1, 0), (2, 60)):  # the others: the same radiance times the key's exposure
        assert np.allclose(after["hdr"][j], seq._radiance(t) * seq.exposure[key], rtol=1e-6)

    def batch(step, **kw):
        return ICAMBatches(sources, 2, 64, 2, seed=5, **kw).batch_at(step)
    step = next(s for s in range(50) if batch(s)["refs"])
    plain, zero, flat = batch(step), batch(step, p_flat_exposure=0.0), batch(step, p_flat_exposure=1.0)
    for k in ("key", "hdr", "blind"):
        assert torch.equal(plain[k], zero[k])
    assert all(torch.equal(a, b) for a, b in zip(plain["refs"], zero["refs"]))
    assert not all(torch.equal(a, b) for a, b in zip(plain["refs"], flat["refs"]))
    assert all(torch.isfinite(r).all() for r in flat["refs"])


def test_near_exposure_drifts_slowly_around_the_key_and_only_draws_when_asked(tmp_path):
    """--near-exposure P (vsvitm-train-icam, icam_data.drift_exposure): with probability P a training sequence's exposure is the key's times a slow
    drift (references a few per cent darker or brighter, as in roadtrip); P = 0 draws nothing, so earlier runs repeat,
    and it shares one draw with --flat-exposure."""
    from vsvitm.training.icam_data import ICAMBatches, drift_exposure
    from vsvitm.training.sources import load_sources
    from vsvitm.training.synth import synth_sequence

    data = tiny_stills(tmp_path)
    sources = load_sources(data, split="train")
    seq = synth_sequence(sources[0], 121, (64, 64), seed=9)
    key = 60
    e_key = float(seq.exposure[key])
    drift_exposure(seq, key, np.random.default_rng(3), max_stops=0.3)
    stops = np.log2(seq.exposure / e_key)
    d = np.abs(np.arange(121) - key)
    assert stops[key] == 0 and np.all(np.abs(stops) <= 0.6 * d / 60 + 1e-6)   # at most 2 x 0.3 stops per 60 frames
    assert np.ptp(stops) > 0.01                                               # it does drift
    assert np.all(np.abs(np.diff(stops)) <= 0.6 / 60 * 2 + 1e-6)             # slowly: no steps

    def batch(step, **kw):
        return ICAMBatches(sources, 2, 64, 2, seed=5, **kw).batch_at(step)
    step = next(s for s in range(50) if batch(s)["refs"])
    plain, zero, near = batch(step), batch(step, p_near_exposure=0.0), batch(step, p_near_exposure=1.0)
    assert all(torch.equal(a, b) for a, b in zip(plain["refs"], zero["refs"]))
    assert not all(torch.equal(a, b) for a, b in zip(plain["refs"], near["refs"]))
    assert all(torch.isfinite(r).all() for r in near["refs"])
    flat_only = batch(step, p_flat_exposure=0.5)
    assert all(torch.equal(a, b) for a, b in zip(flat_only["refs"], batch(step, p_flat_exposure=0.5,
                                                                          p_near_exposure=0.0)["refs"]))

