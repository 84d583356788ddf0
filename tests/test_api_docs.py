"""docs/api.md documents the public API: every name in
``onnxgate.pipeline.__all__``, every keyword of convert/validate/deploy, and
the package ships ``py.typed``."""

import inspect
import re
from pathlib import Path

import onnxgate.pipeline as pipeline

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")


def _sections():
    return set(re.findall(r"^## (\w+)", DOC, flags=re.M))


def test_every_public_name_is_documented():
    errors_table = set(re.findall(r"^\| `(\w+)` \|", DOC, flags=re.M))
    missing = [n for n in pipeline.__all__ if n not in _sections() and n not in errors_table]
    assert missing == [], f"public names without a section in docs/api.md: {missing}"


def test_every_public_name_resolves_and_the_documented_keywords_exist():
    for name in pipeline.__all__:
        assert getattr(pipeline, name) is not None
    for func in (pipeline.convert, pipeline.validate, pipeline.deploy):
        params = [p for p in inspect.signature(func).parameters.values() if p.kind is p.KEYWORD_ONLY]
        assert params, func
        undocumented = [p.name for p in params if not re.search(rf"\b{p.name}\b", DOC)]
        assert undocumented == [], f"{func.__name__}: keywords missing from docs/api.md: {undocumented}"
        assert func.__doc__ and len(func.__doc__) > 200


def test_public_api_is_annotated():
    for func in (pipeline.convert, pipeline.validate, pipeline.deploy):
        sig = inspect.signature(func)
        assert sig.return_annotation is not inspect.Signature.empty, func
        bare = [p.name for p in sig.parameters.values() if p.annotation is inspect.Parameter.empty]
        assert bare == [], f"{func.__name__}: unannotated parameters {bare}"


def test_readme_links_the_api_reference_and_py_typed_ships():
    assert "docs/api.md" in (ROOT / "README.md").read_text(encoding="utf-8")
    assert (ROOT / "pipeline" / "py.typed").is_file()
    cfg = (ROOT / "setup.cfg").read_text(encoding="utf-8")
    assert re.search(r"^onnxgate\.pipeline = py\.typed$", cfg, flags=re.M)


USER_CODE = """
import numpy as np
from onnxgate.pipeline import LocalDeployment, Result, Tolerance, convert, deploy, validate

r: Result = convert("model.skops", sample=np.zeros((2, 4)), tolerance=Tolerance(rtol=1e-3))
ok: bool = r.passed
data: bytes = r.onnx_bytes()
v = validate("model.onnx", sample={"X": [[1.0, 2.0]]}, expected={"label": np.zeros(1)}, rtol=1e-3)
d = deploy(r, registry="/tmp/r", keep_running=True)
if isinstance(d, LocalDeployment):
    out = d.predict(np.zeros((1, 4)))
    d.stop()
"""


def _mypy(tmp_path, code):
    """mypy on user code, resolving onnxgate from the source tree (an editable
    install is an import hook mypy cannot follow): onnxgate/<pkg> -> <pkg>/."""
    import os
    import subprocess
    import sys

    tree = tmp_path / "src" / "onnxgate"
    if not tree.exists():
        tree.mkdir(parents=True)
        for folder in ("pipeline", "plugins", "converters"):
            (tree / folder).symlink_to(ROOT / folder, target_is_directory=True)
    (tmp_path / "user.py").write_text(code, encoding="utf-8")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--ignore-missing-imports",
            "--follow-imports=silent",
            "--cache-dir",
            str(tmp_path / "cache"),
            str(tmp_path / "user.py"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        env={**os.environ, "MYPYPATH": str(tmp_path / "src")},
    )


def test_public_api_type_checks_with_mypy(tmp_path):
    import pytest

    pytest.importorskip("mypy")
    proc = _mypy(tmp_path, USER_CODE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wrong = _mypy(tmp_path, USER_CODE + "\nconvert('m', seed='zero')\nr.passed.upper()\n")
    assert wrong.returncode == 1 and 'incompatible type "str"' in wrong.stdout and "upper" in wrong.stdout
