"""What the plugin says and where: the backend choice once through VapourSynth's log (information
level for the normal CPU case, a warning with the reason for a CUDA provider that fails to load),
nothing on stdout (vspipe writes video there), and a package layout setuptools takes without a warning."""
import ast
import configparser
from pathlib import Path

import pytest
import vapoursynth as vs

from vsvitm import backends

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def vs_log():
    """VapourSynth log messages (type, text) while the test runs."""
    got = []
    handle = vs.core.add_log_handler(lambda mt, msg: got.append((vs.MessageType(mt), msg)))
    yield got
    vs.core.remove_log_handler(handle)


@pytest.fixture
def fresh_choice(monkeypatch):
    """A process that has not chosen its default backend nor said anything yet."""
    monkeypatch.setattr(backends, "_announced", set())
    monkeypatch.setattr(backends, "_sessions", {})

    def probe(state):
        monkeypatch.setattr(backends, "_cuda_ok", state)
    return probe


def ours(log):
    return [(t, m) for t, m in log if m.startswith("vsvitm")]


def test_cpu_choice_is_information_said_once(fresh_choice, vs_log, capfd):
    fresh_choice((False, "no NVIDIA driver (libcuda.so.1) found", False))
    for _ in range(3):
        assert backends.resolve(None).name == "cpu"
    said = ours(vs_log)
    assert said == [(vs.MESSAGE_TYPE_INFORMATION, "vsvitm: using the CPU (no NVIDIA driver (libcuda.so.1) found)")]
    out = capfd.readouterr()
    assert out.out == "" and "Warning" not in out.err and "vsvitm" not in out.err


def test_cuda_provider_failing_to_load_is_a_warning_with_the_reason(fresh_choice, vs_log, capfd):
    fresh_choice((False, "RuntimeError: libcudnn.so.9: cannot open shared object file", True))
    assert backends.resolve(None).name == "cpu"
    backends.resolve(None)
    (kind, msg), = ours(vs_log)
    assert kind == vs.MESSAGE_TYPE_WARNING and "libcudnn.so.9" in msg and "Backend.ORT_CPU()" in msg
    assert capfd.readouterr().out == ""
    with pytest.raises(RuntimeError, match="libcudnn.so.9"):
        backends._cuda_missing(backends.Backend.ORT_CUDA())


def test_cuda_choice_is_information(fresh_choice, vs_log):
    fresh_choice((True, "", False))
    assert backends.resolve(None).name == "cuda"
    assert ours(vs_log) == [(vs.MESSAGE_TYPE_INFORMATION, "vsvitm: using CUDA (GPU 0)")]


def test_probe_reason_is_real():
    ok, why, failed = backends._cuda_probe()
    assert ok == (why == "") and (not failed or why)


def _console_script_modules() -> set[str]:
    """Modules behind setup.cfg's console_scripts: command-line tools, whose stdout is their output."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = cfg.get("options.entry_points", "console_scripts", fallback="").splitlines()
    return {line.split("=", 1)[1].split(":")[0].strip() for line in lines if "=" in line}


def test_no_print_to_stdout_in_the_runtime():
    """vspipe writes video to stdout: the modules that run inside VapourSynth (vsvitm/*.py, not the
    training tools nor the command-line tools) never print there."""
    offenders = []
    tools = _console_script_modules()
    for path in sorted((ROOT / "vsvitm").glob("*.py")):
        if f"vsvitm.{path.stem}" in tools:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"
                    and not any(k.arg == "file" for k in node.keywords)):
                offenders.append(f"{path.name}:{node.lineno}")
            if (isinstance(node, ast.Attribute) and node.attr in ("write", "writelines", "buffer")
                    and isinstance(node.value, ast.Attribute) and node.value.attr == "stdout"):
                offenders.append(f"{path.name}:{node.lineno} (sys.stdout.{node.attr})")
    assert not offenders, f"print/stdout in the runtime: {offenders}"


def test_models_are_a_package_with_their_data():
    """setuptools warns about data folders that are not packages ("Package 'vsvitm.models' is absent
    from the `packages` configuration"): the models folder is a package and its data is declared there."""
    from setuptools import find_packages
    assert "vsvitm.models" in find_packages(str(ROOT), include=["vsvitm*"])
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    data = {k: [v.strip() for v in val.split(",")] for k, val in cfg["options.package_data"].items()}
    assert set(data.get("vsvitm.models", [])) >= {"*.onnx", "*.json"}
    assert not any("/" in pat for pats in data.values() for pat in pats), "data outside its package's folder"


def test_deprecations_in_the_project_are_errors():
    """setup.cfg's filterwarnings: a DeprecationWarning raised from the project's modules fails the run."""
    import warnings
    with pytest.raises(DeprecationWarning):
        warnings.warn("an old API", DeprecationWarning)        # attributed to this test module
    from vsvitm import hdr
    with pytest.raises(DeprecationWarning):
        exec(compile("import warnings; warnings.warn('old', DeprecationWarning)", hdr.__file__, "exec"),
             {"__name__": "vsvitm.hdr"})
