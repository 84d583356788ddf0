"""The contract test kit for converter plugins.

Subclass ``ConverterContract`` in your test suite; pytest collects the
inherited tests (this module is also registered as a pytest plugin through the
``pytest11`` entry point, which provides the ``onnxgate_registry`` fixture)::

    from onnxgate.plugins.testing import ConverterContract

    class TestMyConverter(ConverterContract):
        converter = "myfw"                     # the name your spec registers

        def make_source(self, tmp_path):        # object, file path or "mod:attr"
            return train_small_model()

        def make_sample(self, tmp_path):        # optional: .npz/.npy/.csv path
            return None

Every built-in converter is tested with this kit, as an outside author would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from .detect import HEAVY_MODULES

_DETECT_SCRIPT = r"""
import json, sys
from pathlib import Path
from onnxgate.plugins import detect
from onnxgate.plugins.manager import Registry
name, paths = sys.argv[1], json.loads(sys.argv[2])
reg = Registry()
spec = reg.converter(name)
for p in paths:
    try:
        detect.for_path(Path(p), reg.converters())
    except detect.DetectionError:
        pass
heavy = json.loads(sys.argv[3])
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
"""


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 600):
    """Run ``python -m onnxgate.pipeline.cli ARGS`` in a fresh interpreter."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "onnxgate.pipeline.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=full_env,
        timeout=timeout,
    )


def assert_clean_error(proc, exit_code: int = 2) -> None:
    """One line on stderr starting with 'onnxgate: error:', no traceback."""
    assert proc.returncode == exit_code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("onnxgate: error:")]
    assert len(errors) == 1, proc.stderr


@pytest.fixture
def onnxgate_registry():
    """A fresh registry built from the installed entry points."""
    from .manager import Registry

    return Registry()


class ConverterContract:
    """Tests every converter plugin must pass. Override the hooks below."""

    converter: str = ""
    #: Extra keyword arguments for ``onnxgate.pipeline.convert``.
    convert_kwargs: dict[str, Any] = {}
    #: Suffixes to fill with random bytes; None = the spec's suffixes.
    corrupt_suffixes: Sequence[str] | None = None

    def make_source(self, tmp_path: Path) -> Any:
        raise NotImplementedError("return a model object, a file path, or 'module:attr'")

    def make_sample(self, tmp_path: Path) -> Path | None:
        return None

    def make_convert_kwargs(self, tmp_path: Path) -> dict[str, Any]:
        """Extra keyword arguments that depend on files (``golden=...``)."""
        return {}

    # helpers -------------------------------------------------------------
    def _spec(self):
        from .manager import Registry

        return Registry().converter(self.converter)

    def _convert(self, tmp_path: Path):
        from onnxgate.pipeline import convert

        kwargs = dict(self.convert_kwargs)
        kwargs.update(self.make_convert_kwargs(tmp_path))
        sample = self.make_sample(tmp_path)
        if sample is not None:
            kwargs.setdefault("sample", sample)
        return convert(self.make_source(tmp_path), framework=self.converter, **kwargs)

    # the contract ----------------------------------------------------------
    def test_spec_is_well_formed(self):
        from .spec import ConverterSpec, normalize_name

        spec = self._spec()
        assert isinstance(spec, ConverterSpec)
        assert spec.name == normalize_name(self.converter)
        assert spec.framework.strip()
        assert callable(spec.convert)
        assert spec.run is None or callable(spec.run)
        assert spec.suffixes or spec.object_types or spec.load, "the converter recognises nothing"
        assert all(s.startswith(".") or s == "/" for s in spec.suffixes + spec.unsafe_suffixes)
        assert all(t.count(".") >= 1 for t in spec.object_types), "object_types must be dotted class paths"
        assert spec.tolerance.rtol >= 0 and spec.tolerance.atol >= 0
        assert all(isinstance(r, str) and r for r in spec.requires)

    def test_detection_imports_no_framework(self, tmp_path):
        spec = self._spec()
        paths = []
        for i, suffix in enumerate(spec.suffixes + spec.unsafe_suffixes):
            if suffix == "/":
                folder = tmp_path / f"dir{i}"
                folder.mkdir()
                paths.append(str(folder))
                continue
            path = tmp_path / f"probe{i}{suffix}"
            path.write_bytes(b"\x00probe")
            paths.append(str(path))
        proc = subprocess.run(
            [sys.executable, "-c", _DETECT_SCRIPT, spec.name, json.dumps(paths), json.dumps(HEAVY_MODULES)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout.strip().splitlines()[-1]) == []

    def test_conversion_is_valid_onnx(self, tmp_path):
        import onnx
        import onnxruntime as ort

        result = self._convert(tmp_path)
        onnx.checker.check_model(result.model)
        session = ort.InferenceSession(result.model_bytes(), providers=["CPUExecutionProvider"])
        assert session.get_outputs(), "the ONNX model has no outputs"
        out = tmp_path / "model.onnx"
        result.save(out, tmp_path / "report.json")
        assert out.stat().st_size > 0
        assert json.loads((tmp_path / "report.json").read_text())["converter"]["name"] == self._spec().name

    def test_outputs_match_original(self, tmp_path):
        result = self._convert(tmp_path)
        assert result.passed, result.failures
        compared = [o for c in result.report.cases for o in c.outputs]
        assert compared, "no output was compared"
        assert all(o.passed for o in compared)

    def test_float64_run_measures_the_noise_floor(self, tmp_path):
        """API 1.3: a converter with ``run_float64`` runs the original in float64
        on the validation cases, and its outputs line up with ``run``'s."""
        spec = self._spec()
        if spec.run_float64 is None:
            pytest.skip("no run_float64 (optional): the gate uses its scale-aware default")
        assert callable(spec.run_float64)
        result = self._convert(tmp_path)
        info = result.artifact.gate_info.get("float64_reference") or {}
        assert info.get("ran"), f"the float64 run did not run: {info.get('reason')}"
        check = result.report.check("float32_noise")
        assert check is not None and check.passed, "the report does not say what the float64 run measured"
        for case in result.report.cases:
            for out in case.outputs:
                if out.noise_floor is not None:  # measured: the rule that judged it says so
                    assert out.tolerance_rule == "float32-noise" and out.bound is not None and out.bound >= 0

    def test_corrupt_file_is_a_clean_error(self, tmp_path):
        spec = self._spec()
        suffixes = self.corrupt_suffixes if self.corrupt_suffixes is not None else spec.suffixes
        suffixes = [s for s in suffixes if s != "/"]
        if not suffixes:
            pytest.skip("this converter reads no files")
        for suffix in suffixes:
            bad = tmp_path / f"corrupt-input{suffix}"
            bad.write_bytes(os.urandom(1024))
            out = tmp_path / "corrupt-output.onnx"
            report = tmp_path / "corrupt-output.report.json"
            proc = run_cli("convert", str(bad), "-o", str(out), "--framework", spec.name, "--report", str(report))
            assert_clean_error(proc, 2)
            assert not out.exists() and not report.exists()
