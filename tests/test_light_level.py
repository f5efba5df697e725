"""vsvitm-light-level (vsvitm.evaluation.light_level): MaxCLL and MaxFALL of a script's HDR10 output."""
import pytest

pytest.importorskip("vapoursynth")

from vsvitm.evaluation import light_level as ll  # noqa: E402


def test_light_level_prints_the_encoder_values(tmp_path, capsys):
    """vsvitm-light-level: the first pass of README's encode recipe, "MaxCLL,MaxFALL" alone on stdout."""
    script = tmp_path / "s.vpy"
    script.write_text("import vapoursynth as vs\nfrom vsvitm.hdr import to_hdr10\n"
                      "v = float(globals().get('level', '1.0'))\n"
                      "c = vs.core.std.BlankClip(format=vs.RGBS, width=16, height=16, length=6, color=[v] * 3)\n"
                      "to_hdr10(c[:3] + c[3:].std.Expr('x 0.5 *'), format=vs.RGBS).set_output()\n")
    assert ll.main([str(script), "-a", "level=2.0"]) == 0
    out = capsys.readouterr()
    assert out.out == "406,406\n" and "MaxCLL 406.0" in out.err
    assert ll.main([str(script), "-a", "level=2.0", "--start", "3"]) == 0   # a segment: the darker half
    assert capsys.readouterr().out == "203,203\n"
