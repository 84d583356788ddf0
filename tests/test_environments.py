"""Isolated environments: creation (for real), status, errors, the worker.

The "legacy" environment is created once per session at the location CI
uses ($ONNXGATE_HOME, else the real user's ~/.local/share/onnxgate: conftest
points XDG_DATA_HOME at a temp dir, which would rebuild it every session),
so a pre-created environment (``onnxgate env create legacy`` in .ci/run) is
reused. Tests that need their own, small environments use a temp
ONNXGATE_HOME.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from signal_support import interruptible

from onnxgate.pipeline.envs import isolated as environments
from onnxgate.plugins import EnvironmentSpec
from onnxgate.plugins.errors import UsageError
from onnxgate.plugins.manager import Registry
from onnxgate.plugins.testing import assert_clean_error, run_cli

os.environ.setdefault(
    environments.HOME_ENV, str(Path(pwd.getpwuid(os.getuid()).pw_dir) / ".local" / "share" / "onnxgate")
)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))


@pytest.fixture(scope="session")
def legacy_env():
    """The real legacy environment (created here when CI did not)."""
    spec = Registry().environment("legacy")
    started = time.perf_counter()
    status = environments.create(spec, log=lambda line: print(line, file=sys.stderr))
    print(f"legacy environment ready in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return status


def _small_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "onnxgate-home"
    monkeypatch.setenv(environments.HOME_ENV, str(home))
    return home


# -- the real legacy environment ------------------------------------------------
def test_legacy_env_is_created_and_holds_the_frameworks(legacy_env):
    assert legacy_env.ready
    python = environments.python_of(legacy_env.path)
    probe = (
        "import mxnet, chainer, onnx_chainer, numpy, onnx, pluggy; "
        "print(mxnet.__version__, chainer.__version__, numpy.__version__, onnx.__version__)"
    )
    out = subprocess.run([str(python), "-I", "-c", probe], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1.9.1", "7.8.1", "1.23.5", "1.14.1"]
    marker = json.loads((legacy_env.path / environments.MARKER).read_text())
    assert marker["hash"] == environments.spec_hash(Registry().environment("legacy"))
    assert marker["packages"]["mxnet"] == "1.9.1"


def test_create_again_is_a_no_op(legacy_env):
    marker = legacy_env.path / environments.MARKER
    before = marker.stat()
    lines = []
    status = environments.create(Registry().environment("legacy"), log=lines.append)
    assert status.ready and status.path == legacy_env.path
    assert "nothing to do" in lines[-1]
    after = marker.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_cli_env_list_path_and_plugins(legacy_env):
    listing = run_cli("env", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    (row,) = [r for r in json.loads(listing.stdout) if r["name"] == "legacy"]
    assert row["state"] == "ready" and row["converters"] == ["chainer", "mxnet"]
    path = run_cli("env", "path", "legacy", "--python")
    assert path.returncode == 0 and Path(path.stdout.strip()) == environments.python_of(legacy_env.path)
    plugins = run_cli("plugins", "--json")
    rows = {r["name"]: r for r in json.loads(plugins.stdout)}
    assert rows["mxnet"]["usable"] and rows["mxnet"]["framework_version"] == "1.9.1"
    assert rows["chainer"]["usable"] and rows["chainer"]["environment"] == "legacy"


def test_plugins_listing_imports_no_framework():
    code = (
        "import sys, json; from onnxgate.pipeline.cli import plugins as cli_plugins, env as cli_env; cli_plugins.rows(); "
        "cli_env.rows(); print(json.dumps([m for m in sys.modules if m.split('.')[0] in "
        "('mxnet', 'chainer', 'onnx_chainer')]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


# -- missing, stale, broken environments ----------------------------------------------
def test_missing_env_is_a_one_line_error_naming_the_command(tmp_path, monkeypatch):
    _small_home(tmp_path, monkeypatch)
    source = tmp_path / "m-symbol.json"
    source.write_text(json.dumps({"nodes": [], "arg_nodes": [], "heads": []}))
    out = tmp_path / "m.onnx"
    proc = run_cli("convert", str(source), "-o", str(out))
    assert_clean_error(proc, 2)
    assert "onnxgate env create legacy" in proc.stderr
    assert not out.exists()
    plugins = {r["name"]: r for r in json.loads(run_cli("plugins", "--json").stdout)}
    assert not plugins["mxnet"]["usable"]
    assert "onnxgate env create legacy" in plugins["mxnet"]["missing"][0]
    path = run_cli("env", "path", "legacy")
    assert_clean_error(path, 2)


def test_changed_recipe_makes_the_env_stale(tmp_path, monkeypatch):
    home = _small_home(tmp_path, monkeypatch)
    spec = EnvironmentSpec(name="tiny", install_steps=())
    path = home / "envs" / "tiny"
    (path / "bin").mkdir(parents=True)
    (path / "bin" / "python").symlink_to(sys.executable)
    (path / environments.MARKER).write_text(json.dumps({"hash": environments.spec_hash(spec)}))
    assert environments.status(spec).ready
    changed = EnvironmentSpec(name="tiny", install_steps=(("pluggy",),))
    st = environments.status(changed)
    assert st.state == "stale"
    with pytest.raises(UsageError, match="onnxgate env create tiny"):
        environments.require(changed)


def test_failed_create_leaves_nothing_behind(tmp_path, monkeypatch):
    home = _small_home(tmp_path, monkeypatch)
    # --no-index: pip fails at once, without asking any registry
    spec = EnvironmentSpec(
        name="broken", python=sys.executable, install_steps=(("--no-index", "onnxgate-test-no-such-distribution"),)
    )
    leftover = home / "envs" / ".broken.build-killed"
    leftover.mkdir(parents=True)  # what a create killed with SIGKILL leaves
    with pytest.raises(UsageError) as info:
        environments.create(spec)
    message = str(info.value)
    assert "failed" in message and "onnxgate-test-no-such-distribution" in message and "\n" not in message
    envs = home / "envs"
    assert not (envs / "broken").exists()
    assert not list(envs.glob(".broken.build-*"))
    assert environments.status(spec).state == "missing"


def test_create_builds_aside_then_renames(tmp_path, monkeypatch):
    """A small real environment (only the worker's own requirement)."""
    home = _small_home(tmp_path, monkeypatch)
    spec = EnvironmentSpec(name="tiny", python=sys.executable, install_steps=())
    seen = []

    def log(line):
        seen.append((line, sorted(p.name for p in (home / "envs").iterdir())))

    status = environments.create(spec, log=log)
    assert status.ready
    # while installing, only the hidden build folder existed
    during = [names for line, names in seen if line.startswith("[")]
    assert during and all("tiny" not in names and any(n.startswith(".tiny.build-") for n in names) for names in during)
    assert sorted(p.name for p in (home / "envs").iterdir() if not p.name.startswith(".")) == ["tiny"]
    assert "pluggy" in status.packages
    assert environments.remove(spec) and not (home / "envs" / "tiny").exists()


def test_cli_env_unknown_name_is_a_usage_error():
    proc = run_cli("env", "create", "no-such-env")
    assert_clean_error(proc, 2)
    assert "unknown environment" in proc.stderr


# -- the worker, for any plugin -------------------------------------------------------
THIRD_PARTY_PLUGIN = '''
"""A third-party plugin whose stage 1 runs in the legacy environment:
a ".scale" file holds a factor k; the model is y = k * x."""
from pathlib import Path

from onnxgate.plugins import Conversion, ConverterSpec, InputSpec, hookimpl


def load(path, trusted):
    return float(Path(path).read_text())


def convert(k, example, options):
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "k"], ["y"])], "scale",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(np.array(k, dtype=np.float32), "k")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return Conversion(model, exporter="onnx " + onnx.__version__ + ", numpy " + np.__version__)


def run(k, inputs):
    return [inputs["x"] * k]


@hookimpl
def onnxgate_converters():
    yield ConverterSpec(
        name="scale", framework="Scale", convert=convert, run=run, load=load,
        inputs=lambda k: [InputSpec("x", (None, 3))], suffixes=(".scale",),
        requires=("numpy",), framework_distribution="numpy", environment="legacy",
    )
'''


def test_a_third_party_plugin_runs_in_an_environment(legacy_env, tmp_path, monkeypatch):
    from onnxgate.pipeline import convert
    from onnxgate.plugins.manager import get_plugin_manager

    (tmp_path / "acme_scale.py").write_text(textwrap.dedent(THIRD_PARTY_PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    import acme_scale

    registry = Registry(get_plugin_manager(plugins=[acme_scale]))
    source = tmp_path / "double.scale"
    source.write_text("2.5")
    result = convert(source, registry=registry)
    assert result.passed, result.failures
    # stage 1 ran in the environment: its onnx and numpy, not ours
    assert result.artifact.converter["exporter"] == "onnx 1.14.1, numpy 1.23.5"
    assert result.report.source.framework_version == "1.23.5"
    assert result.artifact.versions["environment:numpy"] == "1.23.5"


def test_worker_errors_keep_their_kind(legacy_env, tmp_path, monkeypatch):
    from onnxgate.pipeline import convert
    from onnxgate.plugins.errors import ConversionError
    from onnxgate.plugins.manager import get_plugin_manager

    plugin = THIRD_PARTY_PLUGIN.replace('return [inputs["x"] * k]', 'return [inputs["x"] * k]').replace(
        "def convert(k, example, options):",
        "def convert(k, example, options):\n    if k < 0:\n"
        "        raise RuntimeError('negative factors are not supported')",
    )
    (tmp_path / "acme_scale2.py").write_text(textwrap.dedent(plugin).replace('name="scale"', 'name="scale2"'))
    monkeypatch.syspath_prepend(str(tmp_path))
    import acme_scale2

    registry = Registry(get_plugin_manager(plugins=[acme_scale2], load_entry_points=False))
    bad = tmp_path / "neg.scale"
    bad.write_text("-1")
    with pytest.raises(ConversionError, match="negative factors are not supported"):
        convert(bad, registry=registry)
    broken = tmp_path / "broken.scale"
    broken.write_text("not a number")
    with pytest.raises(UsageError, match="cannot load as Scale"):
        convert(broken, registry=registry)


# -- the artifact as files ------------------------------------------------------------------
def test_artifact_round_trip(tmp_path):
    import onnx
    from onnx import helper

    from onnxgate.pipeline.core.artifact import Artifact, Case
    from onnxgate.plugins.spec import Tolerance

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None, 2])],
    )
    x = np.arange(4, dtype=np.float32).reshape(2, 2)
    artifact = Artifact(
        model=helper.make_model(graph),
        cases=[Case("a", {"x": x}, {"y": x}, meta={"kind": "sample"}), Case("skipped", {"x": x}, None)],
        tolerance=Tolerance(rtol=1e-3, atol=0.5),
        source={"path": "p", "sha256": "s"},
        converter={"name": "c", "opset": 13},
        notes=["n"],
        timings={"load_s": 0.5},
    )
    if hasattr(artifact, "latency"):
        artifact.latency = {1: {"mean_ms": 0.1}, 4: {"mean_ms": np.float64(0.2)}}
    environments.write_artifact(artifact, tmp_path / "a")
    back = environments.read_artifact(tmp_path / "a")
    assert back.model == artifact.model
    assert back.tolerance == artifact.tolerance and back.notes == ["n"] and back.converter == artifact.converter
    assert back.cases[0].meta == {"kind": "sample"} and back.cases[1].expected is None
    np.testing.assert_array_equal(back.cases[0].expected["y"], x)
    if hasattr(artifact, "latency"):
        assert back.latency == {1: {"mean_ms": 0.1}, 4: {"mean_ms": 0.2}}


INTERRUPTED_CREATE = r"""
import sys
from onnxgate.pipeline.envs import isolated as environments
from onnxgate.plugins import EnvironmentSpec
spec = EnvironmentSpec(name="slow", python=sys.executable, install_steps=(("pluggy",),))
environments.create(spec, log=lambda line: print(line, flush=True))
"""


@pytest.mark.parametrize("how", ["SIGINT", "SIGKILL"])
def test_interrupted_create_leaves_no_environment(tmp_path, monkeypatch, how):
    import signal

    home = _small_home(tmp_path, monkeypatch)
    proc = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTED_CREATE],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
        preexec_fn=interruptible,
    )
    envs = home / "envs"
    deadline = time.monotonic() + 120
    while not list(envs.glob(".slow.build-*")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the create finished before it could be interrupted"
    proc.send_signal(getattr(signal, how))
    proc.wait(timeout=120)
    proc.stdout.close()
    assert not (envs / "slow").exists()
    spec = EnvironmentSpec(name="slow", python=sys.executable, install_steps=(("pluggy",),))
    assert environments.status(spec).state == "missing"
    if how == "SIGINT":  # cleaned up on the way out
        assert not list(envs.glob(".slow.build-*"))
