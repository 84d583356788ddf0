"""`onnxgate plugin new`: the generated package installs into a fresh venv
with pip, `onnxgate plugins` lists it, its contract tests run and fail naming
the callable to write; filled in, the same tests pass."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from onnxgate.plugins import API_VERSION
from onnxgate.plugins.testing import assert_clean_error, run_cli

ROOT = Path(__file__).resolve().parents[1]

#: The template's TODO bodies, and what an author writes there (a toy
#: framework: an .npz holding W and b, y = x @ W + b).
FILLED = {
    '    _todo("load", "read the model file at `path` and return the model object")': "    import numpy as np\n    with np.load(path, allow_pickle=False) as data:\n"
    '        return {"W": data["W"], "b": data["b"]}',
    '    _todo("inputs", "return [InputSpec(name, shape, dtype), ...] (None in a shape = dynamic), or None")': '    return [InputSpec("x", (None, model["W"].shape[0]))]',
    '    _todo("convert", "export `model` to an onnx.ModelProto and return Conversion(proto, exporter=\'...\')")': "    from onnx import TensorProto, helper, numpy_helper\n"
    "    graph = helper.make_graph(\n"
    '        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],\n'
    '        "affine", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", model["W"].shape[0]])],\n'
    '        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", model["W"].shape[1]])],\n'
    '        [numpy_helper.from_array(model["W"], "W"), numpy_helper.from_array(model["b"], "b")])\n'
    '    opset = helper.make_opsetid("", options.opset or 17)\n'
    '    return Conversion(helper.make_model(graph, opset_imports=[opset]), exporter="handwritten")',
    '    _todo("run", "run the original model on `inputs` and return its outputs as numpy arrays")': '    return [inputs["x"] @ model["W"] + model["b"]]',
}
SOURCE = (
    '        path = tmp_path / "model.toyfw"\n'
    "        import numpy as np\n"
    '        with open(path, "wb") as fh:\n'
    "            np.savez(fh, W=np.arange(6, dtype=np.float32).reshape(3, 2), b=np.ones(2, np.float32))\n"
    "        return path\n"
)


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A fresh venv that sees this interpreter's packages through a .pth (no
    downloads), with onnxgate and the generated plugin installed by pip."""
    root = tmp_path_factory.mktemp("scaffold")
    made = run_cli("plugin", "new", "toyfw", "--dir", str(root), "--framework", "ToyFW")
    assert made.returncode == 0, made.stderr
    package = root / "onnxgate-toyfw"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True)
    python = root / "venv" / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    parents = [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    Path(purelib, "_parent_site.pth").write_text("\n".join(parents) + "\n")
    pip = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-e",
            str(ROOT),
            "-e",
            str(package),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{root / 'venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return root, package, python, env


def test_generated_files(venv):
    _, package, _, _ = venv
    found = sorted(str(p.relative_to(package)) for p in package.rglob("*") if p.is_file())
    assert found == [
        "README.md",
        "onnxgate_toyfw/__init__.py",
        "onnxgate_toyfw/converter.py",
        "pyproject.toml",
        "tests/test_contract.py",
        "tox.ini",
    ]
    pyproject = (package / "pyproject.toml").read_text()
    assert '[project.entry-points.onnxgate]\ntoyfw = "onnxgate_toyfw.converter"' in pyproject


def test_refuses_to_overwrite_and_bad_names(venv):
    root, _, _, _ = venv
    assert_clean_error(run_cli("plugin", "new", "toyfw", "--dir", str(root)), 2)
    assert_clean_error(run_cli("plugin", "new", "Toy FW", "--dir", str(root)), 2)
    assert not (root / "onnxgate-toy fw").exists()


def test_installed_plugin_is_listed_and_checks_clean(venv):
    _, _, _, env = venv
    listed = subprocess.run(["onnxgate", "plugins", "--json"], capture_output=True, text=True, env=env)
    assert listed.returncode == 0, listed.stderr
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert rows["toyfw"]["from"] == "onnxgate-toyfw 0.1.0" and rows["toyfw"]["framework"] == "ToyFW"
    check = subprocess.run(["onnxgate", "plugins", "check", "toyfw"], capture_output=True, text=True, env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"declares API >={API_VERSION},<2" in check.stdout  # the scaffold asks for the current API


def test_contract_tests_fail_naming_the_callable_then_pass_when_written(venv):
    _, package, python, env = venv
    pytest_cmd = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", str(package / "tests")]
    proc = subprocess.run(pytest_cmd, capture_output=True, text=True, env=env, cwd=package, timeout=600)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "2 failed, 3 passed" in proc.stdout
    assert f"NotImplementedError: toyfw: write load() in {package / 'onnxgate_toyfw' / 'converter.py'}" in proc.stdout

    converter = package / "onnxgate_toyfw" / "converter.py"
    text = converter.read_text()
    for todo in FILLED:
        assert todo in text, todo
    # write load() only: the next failure names inputs()
    converter.write_text(text.replace(next(iter(FILLED)), FILLED[next(iter(FILLED))]))
    tests = package / "tests" / "test_contract.py"
    placeholder = tests.read_text()
    start = placeholder.index('        path = tmp_path / "model.toyfw"')
    end = placeholder.index("        return path\n") + len("        return path\n")
    tests.write_text(placeholder[:start] + SOURCE + placeholder[end:])
    proc = subprocess.run(pytest_cmd, capture_output=True, text=True, env=env, cwd=package, timeout=600)
    assert "NotImplementedError: toyfw: write inputs() in" in proc.stdout, proc.stdout[-3000:]

    for todo, body in FILLED.items():
        text = text.replace(todo, body)
    converter.write_text(text)
    proc = subprocess.run(pytest_cmd, capture_output=True, text=True, env=env, cwd=package, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "5 passed" in proc.stdout
