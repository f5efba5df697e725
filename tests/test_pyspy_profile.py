"""vsvitm-pyspy-profile (vsvitm.evaluation.pyspy_profile): py-spy's samples charged to engine parts."""
from vsvitm.evaluation import pyspy_profile as pp


def test_pyspy_profile_charges_samples_to_the_innermost_engine_part():
    """vsvitm-pyspy-profile: each sample goes to the innermost engine function named in PARTS (a warp
    called from inside a graph-running helper is a warp), its leaf is the innermost Python frame, and the
    weights count."""
    frames = [{"name": n, "file": f"/x/{n}.py", "line": i} for i, n in
              enumerate(["ITM.render", "Engine._ref_split", "Engine._run", "Session.run", "warp_planes", "remap",
                         "other", "process 7:\"python x.py\"", "Engine.run_banded.<locals>.rows"])]
    ss = {"shared": {"frames": frames}, "profiles": [
        {"samples": [[0, 1, 2, 3], [0, 1, 4, 5], [0, 6], [], [7], [7, 0, 8]], "weights": [3, 2, 1, 7, 5, 0.5]},
        {"samples": [[0, 1, 2, 3]], "weights": [4]}]}
    total, leaves, parts = pp.summarise(ss, top=2)
    assert total == 10.5   # neither the empty stack nor a bare process frame is running Python
    # methods match by their last name; "rows" (a closure inside run_banded) is in no part
    assert dict(parts) == {"ONNX graph runs": 7, "OpenCV warps between graphs": 2, "other Python": 1.5}
    assert leaves == [("Session.run (Session.run.py:3)", 7), ("remap (remap.py:5)", 2)]
    assert "| `ONNX graph runs` | 7.0 | 66.7 % |" in pp.table(parts, total, "part")
