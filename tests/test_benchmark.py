"""vsvitm-benchmark (vsvitm.evaluation.benchmark and its parts): the report's header, --arch, and the
per-graph call counter (hooks.GraphCounter)."""
import numpy as np
import pytest

pytest.importorskip("vapoursynth")

from vsvitm.evaluation import bench_models, machine  # noqa: E402
from vsvitm.evaluation.hooks import GraphCounter  # noqa: E402


def test_benchmark_arch_widths():
    assert bench_models.random_arch(None) == {} and bench_models.random_arch("") == {}
    assert bench_models.random_arch('{"icam": {"c1": 16}, "fcpm": {"hidden": 8}}') == {"icam": {"c1": 16}, "fcpm": {"hidden": 8}}
    for bad, says in (("{c1: 16}", "not JSON"), ('{"unet": {}}', "expected"), ('{"icam": {"width": 3}}', "fields: c1")):
        with pytest.raises(SystemExit, match=says):
            bench_models.random_arch(bad)


def test_benchmark_describes_cpu_vector_extensions():
    """Hosts named alike ("AMD EPYC") ran the same graphs at different speeds: the header tells them apart."""
    zen3 = ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\n"
            "model name\t: AMD EPYC\nflags\t\t: fpu sse2 avx avx2 fma\n\n"
            "processor\t: 1\nmodel name\t: other\nflags\t\t: avx512f\n")
    assert machine.cpu_description(zen3) == "AMD EPYC (family 25, model 1; AVX2, no AVX-512)"
    zen4 = zen3.replace("avx2 fma", "avx2 fma avx512f avx512_vnni").replace("model\t\t: 1", "model\t\t: 17")
    assert machine.cpu_description(zen4) == "AMD EPYC (family 25, model 17; AVX2, AVX-512, AVX-512 VNNI)"
    assert machine.cpu_description("") == ""


def test_benchmark_describes_weighted_soups():
    """The shipped ICAM is a weighted soup (a soup counted twice, plus a fine-tune): the header says so, not
    "mean weights of 2 fine-tunes"."""
    assert bench_models.soup_description([{"checkpoint": "a"}, {"checkpoint": "b"}]) == "mean weights of 2 checkpoints"
    shipped = [{"checkpoint": "runs/shipped_H2/icam.pt", "weight": 2.0}, {"checkpoint": "runs/icam_s33nh/last.pt", "weight": 1.0}]
    assert bench_models.soup_description(shipped) == "weighted mean of 2 checkpoints (weights 2 : 1)"


def test_benchmark_counts_io_bound_runs_by_graph(monkeypatch):
    """vsvitm-benchmark's per-graph counter times IO-bound runs (CUDA's path) and names the engine's own small
    graphs (round_half, merge_prep) instead of lumping them together."""
    import vsvitm
    from vsvitm import backends, engine, flow
    from vsvitm.prep import merge_prep_graph
    for mod, name in ((backends, "session"), (backends, "run"), (backends, "run_bound"), (backends, "aux_session"),
                      (flow.DISFlow, "calc"), (flow.HomographyDIS, "calc"), (engine.Engine, "run_banded"),
                      (flow, "warp_planes")):
        monkeypatch.setattr(mod, name, getattr(mod, name))  # restored after the test: install() patches them
    counter = GraphCounter()
    counter.install()
    counter.on = True
    be = vsvitm.Backend.ORT_CPU()
    x = backends.to_device(np.ones((1, 2, 3, 4), np.float32), "cpu")
    backends.round_half(x, be)
    backends.round_half(x, be)
    prep = backends.aux_session("merge_prep_1_0", lambda: backends.model_bytes(merge_prep_graph(1, False, 100.0)), be)
    one = np.ones((1,), np.float32)
    backends.run_bound(prep, {"k0": np.ones((1, 4, 2, 2), np.float32), "y0": np.ones((1, 3, 2, 2), np.float32),
                              "s0": one, "e0": one}, "cpu")
    assert counter.stats["round_half"][0] == 2 and counter.stats["merge_prep"][0] == 1
    y = np.random.default_rng(0).random((40, 48)).astype(np.float32)
    flow.HomographyDIS("medium").calc(y, y)   # ICAM's homography-started pre-flows have their own column
    flow.DISFlow("medium").calc(y, y)
    assert counter.stats["dis_flow_homography"][0] == 1 and counter.stats["dis_flow"][0] == 1


def test_seek_steps_seeks_where_asked(tiny_models):
    """--seek: a cold request of the frame asked for (the middle one by default), then single steps."""
    import vsvitm
    from vsvitm.evaluation.bench_child import seek_steps
    from vsvitm.vsnp import clip_from_array
    from conftest import moving_clip
    out = vsvitm.ITM(clip_from_array(moving_clip(20)), models=tiny_models)
    cfg = {"size": [64, 48], "mode": "temporal", "backend": "cpu", "frames": 3}
    r = seek_steps(out, cfg)
    assert r["seek_at"] == 10 and r["frames"] == 3 and r["step_max_s"] >= r["step_mean_s"] > 0
    r = seek_steps(out, {**cfg, "seek_at": 17})
    assert r["seek_at"] == 17 and r["frames"] == 2
    with pytest.raises(ValueError, match="--seek-at 25"):
        seek_steps(out, {**cfg, "seek_at": 25})
