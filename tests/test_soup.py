"""vsvitm-soup (vsvitm.training.soup): weighted means of checkpoints of one network."""
import json

import pytest

torch = pytest.importorskip("torch")

from vsvitm.training import soup  # noqa: E402
from vsvitm.training.icam_net import ICAM, ICAMConfig  # noqa: E402


def test_soup_is_the_weighted_mean_and_refuses_other_networks(tmp_path):
    """vsvitm-soup: weights average with the given weights into a checkpoint ICAM loads;
    a checkpoint of another shape of network is refused by name."""
    from dataclasses import asdict

    cfg = ICAMConfig(c1=8, c2=8, c3=8, c4=16, offsets=2)
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        p = tmp_path / f"m{seed}.pt"
        torch.save({"model": ICAM(cfg).state_dict(), "config": asdict(cfg), "step": 5}, p)
        paths.append(p)
    (tmp_path / "config.json").write_text(json.dumps({"args": {"lr": 1e-4, "max_refs": 8}}))
    out = tmp_path / "soup.pt"
    soup.main(["--out", str(out), str(paths[0]), f"{paths[1]}:3"])
    st = torch.load(out, map_location="cpu", weights_only=False)
    assert st["soup"][0]["training_args"] == {"lr": 1e-4, "max_refs": 8}   # the run's options travel along
    a, b = (torch.load(p, weights_only=False)["model"] for p in paths)
    k = next(k for k, v in a.items() if v.is_floating_point() and not torch.equal(v, b[k]))
    assert torch.allclose(st["model"][k], 0.25 * a[k] + 0.75 * b[k], atol=1e-6)
    assert [d["weight"] for d in st["soup"]] == [1.0, 3.0]
    ICAM(ICAMConfig(**st["config"])).load_state_dict(st["model"])
    soup.main(["--out", str(tmp_path / "nested.pt"), str(out), str(paths[0])])   # a soup of a soup keeps its list
    nested = torch.load(tmp_path / "nested.pt", map_location="cpu", weights_only=False)["soup"]
    assert nested[0]["soup"] == st["soup"] and "soup" not in nested[1]
    other = ICAMConfig(c1=8, c2=8, c3=8, c4=24, offsets=2)
    torch.save({"model": ICAM(other).state_dict(), "config": asdict(other), "step": 1}, tmp_path / "o.pt")
    with pytest.raises(ValueError, match="config"):
        soup.soup([(str(paths[0]), 1.0), (str(tmp_path / "o.pt"), 1.0)])
    with pytest.raises(ValueError, match="no such checkpoint"):
        soup.soup([(str(tmp_path / "missing.pt"), 1.0)])
