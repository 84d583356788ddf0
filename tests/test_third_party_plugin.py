"""An outside plugin, installed the way a pip package would be (a dist-info
with an entry point), is listed, detected, gated, and passes the contract kit
when its author runs pytest."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

PLUGIN = textwrap.dedent('''
    """A toy framework and its onnxgate converter: y = x @ W + b."""
    import numpy as np
    from onnxgate.plugins import Conversion, ConverterSpec, InputSpec, Tolerance, hookimpl

    class Affine:
        def __init__(self, W, b):
            self.W, self.b = np.asarray(W, np.float32), np.asarray(b, np.float32)
        def predict(self, x):
            return x @ self.W + self.b

    def load(path, trusted):
        data = np.load(path, allow_pickle=False)
        return Affine(data["W"], data["b"])

    def convert(model, example, options):
        from onnx import TensorProto, helper, numpy_helper
        W = numpy_helper.from_array(model.W, "W")
        b = numpy_helper.from_array(model.b, "b")
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],
            "affine",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", model.W.shape[0]])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", model.W.shape[1]])],
            [W, b],
        )
        opset = options.opset or 17
        return Conversion(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), exporter="toy")

    def sniff(path):
        return path.read_bytes()[:2] == b"PK"

    @hookimpl
    def onnxgate_converters():
        yield ConverterSpec(
            name="affine", framework="Affine", convert=convert,
            run=lambda model, inputs: [model.predict(inputs["x"])],
            # inputs(model): the API 1.0 form, still accepted (with a DeprecationWarning)
            load=load, inputs=lambda m: [InputSpec("x", (None, m.W.shape[0]))],
            suffixes=(".affine",), sniff=sniff, object_types=("affine_plugin.Affine",),
            tolerance=Tolerance(rtol=1e-5, atol=1e-6), requires=("numpy",),
        )
''')

CONTRACT = textwrap.dedent("""
    import numpy as np
    from onnxgate.plugins.testing import ConverterContract

    class TestAffineContract(ConverterContract):
        converter = "affine"
        def make_source(self, tmp_path):
            path = tmp_path / "m.affine"
            with open(path, "wb") as fh:
                np.savez(fh, W=np.arange(12, dtype=np.float32).reshape(4, 3) / 7, b=np.ones(3, np.float32))
            return path
""")


@pytest.fixture
def installed_plugin(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "affine_plugin.py").write_text(PLUGIN)
    dist = site / "affine_plugin-0.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: affine-plugin\nVersion: 0.3\n")
    (dist / "entry_points.txt").write_text("[onnxgate]\naffine = affine_plugin\n")
    env = dict(os.environ, PYTHONPATH=str(site))
    return site, env


def test_listed_with_its_distribution(installed_plugin):
    _, env = installed_plugin
    proc = subprocess.run(
        [sys.executable, "-m", "onnxgate.pipeline.cli", "plugins", "--json"], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert rows["affine"]["from"] == "affine-plugin 0.3" and rows["affine"]["usable"]


def test_author_runs_the_contract_kit_with_pytest(installed_plugin, tmp_path):
    site, env = installed_plugin
    (tmp_path / "test_affine.py").write_text(CONTRACT)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "test_affine.py")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "5 passed" in proc.stdout


def test_disabled_by_environment_variable(installed_plugin):
    _, env = installed_plugin
    env["ONNXGATE_DISABLE_PLUGINS"] = "affine"
    proc = subprocess.run(
        [sys.executable, "-m", "onnxgate.pipeline.cli", "plugins", "--json"], capture_output=True, text=True, env=env
    )
    assert "affine" not in {r["name"] for r in json.loads(proc.stdout)}
