"""libsvm through the onnxmltools compatibility layer, and CNTK recognition
(CNTK and libsvm both write ``.model`` files; content decides)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from onnxgate.plugins.testing import HEAVY_MODULES, ConverterContract

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
import coreml_libsvm_fixtures as fx

pytest.importorskip("libsvm")
pytest.importorskip("onnxmltools")

MODELS = {name: (options, X, y) for name, options, X, y in fx.libsvm_models()}


def write(tmp_path: Path, name: str = "libsvm-csvc-rbf") -> dict:
    options, X, y = MODELS[name]
    return fx.write_libsvm(name, options, X, y, tmp_path)


def cli(capsys, *args):
    from onnxgate.pipeline.cli import main

    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.err


def assert_one_line_error(err: str) -> None:
    assert "Traceback" not in err
    assert len([ln for ln in err.splitlines() if ln.startswith("onnxgate: error:")]) == 1, err


class TestLibsvmContract(ConverterContract):
    converter = "libsvm"

    def make_source(self, tmp_path):
        return write(tmp_path)["source"]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_type_and_kernel_matches_libsvm(name, tmp_path):
    """C-SVC, nu-SVC, epsilon-SVR, nu-SVR; linear and RBF; with and without -b 1."""
    from onnxgate.pipeline import convert

    files = write(tmp_path, name)
    result = convert(files["source"], sample=files["sample"])
    assert result.passed, result.failures
    names = [o.name for o in result.model.graph.output]
    if "svr" in name:
        assert names == ["value"]
    else:
        assert names == ["label", "probabilities" if "probability" in name else "decision_values"]
    compared = [o for c in result.report.cases for o in c.outputs]
    assert {o.name for o in compared} == set(names) and all(o.passed for o in compared)


def test_unsorted_labels_keep_libsvm_order(tmp_path):
    """onnxmltools sorts class labels but not the vectors; the converter undoes that."""
    from libsvm import svmutil

    from onnxgate.pipeline import convert

    files = write(tmp_path, "libsvm-csvc-rbf")
    model = svmutil.svm_load_model(files["source"])
    assert model.get_labels() == [2, 0, 1]  # first-seen order, the case onnxmltools gets wrong
    result = convert(model, sample=files["sample"])
    assert result.passed, result.failures
    [label] = [o for o in result.report.cases[0].outputs if o.name == "label"]
    assert label.max_abs_err == 0


def test_in_memory_model_is_detected(tmp_path):
    from libsvm import svmutil

    from onnxgate.plugins import detect
    from onnxgate.plugins.manager import Registry

    model = svmutil.svm_load_model(write(tmp_path)["source"])
    assert detect.for_object(model, Registry().converters()).name == "libsvm"


def test_wider_inputs_than_the_support_vectors(tmp_path):
    """libsvm stores sparse vectors: trailing all-zero features are invisible in
    the model, so a sample may be wider; the extra columns get zero weight."""
    from onnxgate.pipeline import convert

    files = write(tmp_path, "libsvm-csvc-linear-binary")
    X = np.load(files["sample"])["X"]
    wide = tmp_path / "wide.npz"
    np.savez(wide, X=np.hstack([X, np.ones((len(X), 2), np.float32)]))
    result = convert(files["source"], sample=wide)
    assert result.passed, result.failures
    assert result.model.graph.input[0].type.tensor_type.shape.dim[1].dim_value == X.shape[1] + 2


def test_a_file_without_suffix_needs_framework(tmp_path, capsys):
    source = Path(write(tmp_path)["source"])
    bare = source.with_suffix("")
    bare.write_bytes(source.read_bytes())
    code, err = cli(capsys, "convert", bare, "-o", tmp_path / "a.onnx")
    assert code == 2 and "--framework" in err
    code, err = cli(capsys, "convert", bare, "--framework", "libsvm", "-o", tmp_path / "a.onnx")
    assert code == 0, err


def test_truncated_file_is_a_clean_error(tmp_path, capsys):
    source = Path(write(tmp_path)["source"])
    text = source.read_text()
    source.write_text(text[: len(text) // 2])
    out = tmp_path / "t.onnx"
    code, err = cli(capsys, "convert", source, "-o", out)
    assert code == 2
    assert_one_line_error(err)
    assert "truncated" in err and not out.exists()


def test_header_only_file_is_a_clean_error(tmp_path, capsys):
    source = Path(write(tmp_path)["source"])
    header = source.read_text().split("\nSV\n")[0] + "\n"
    source.write_text(header)
    code, err = cli(capsys, "convert", source, "-o", tmp_path / "t.onnx")
    assert code == 2
    assert_one_line_error(err)
    assert "no 'SV' line" in err


def test_one_class_svm_is_refused_with_the_reason(tmp_path, capsys):
    from libsvm import svmutil

    _, X, y = MODELS["libsvm-csvc-rbf"]
    path = tmp_path / "oneclass.model"
    svmutil.svm_save_model(str(path), fx.train_libsvm("-s 2 -t 2", X, y))
    code, err = cli(capsys, "convert", path, "-o", tmp_path / "o.onnx")
    assert code == 2
    assert_one_line_error(err)
    assert "one_class" in err and "not supported" in err


_UPSTREAM_LIBSVM = """
import numpy as np
from libsvm import svmutil
for probe in ("import onnxmltools.convert.libsvm", "from libsvm.svm import C_SVC"):
    try:
        exec(probe)
    except ImportError as exc:
        print("broken:", probe, "|", exc)
    else:
        print("fixed:", probe)
from onnxmltools.convert import convert_libsvm
m = svmutil.svm_train(svmutil.svm_problem([0, 1], [[0.0], [1.0]]), svmutil.svm_parameter("-q"))
try:
    convert_libsvm(m, initial_types=[])
except RuntimeError as exc:
    print("broken: convert_libsvm |", exc)
except Exception as exc:
    print("fixed: convert_libsvm", type(exc).__name__)
"""


def test_onnxmltools_libsvm_still_needs_the_compat_layer():
    """When this fails, onnxmltools (or libsvm-official) fixed a libsvm path:
    delete the matching part of converters/onnxmltools_compat.py."""
    proc = subprocess.run([sys.executable, "-c", _UPSTREAM_LIBSVM], capture_output=True, text=True, timeout=300)
    hint = "\nupstream fixed it: drop that patch from converters/onnxmltools_compat.py\n" + proc.stdout + proc.stderr
    assert "broken: import onnxmltools.convert.libsvm" in proc.stdout, hint
    assert "broken: from libsvm.svm import C_SVC" in proc.stdout, hint
    assert "broken: convert_libsvm | libsvm is not installed" in proc.stdout, hint


# --- CNTK: recognised, refused with the reason -------------------------------
def _cntk_v2_bytes() -> bytes:
    """A minimal CNTK v2 model layout: Dictionary{version: 1, data: {"type":
    "CompositeFunction", "primitive_functions": <empty>}} in protobuf wire format."""

    def field(number: int, payload: bytes) -> bytes:
        return bytes([number << 3 | 2, len(payload)]) + payload

    def entry(key: bytes, value: bytes) -> bytes:
        return field(2, field(1, key) + field(2, value))

    string_value = b"\x08\x01\x10\x06" + field(8, b"CompositeFunction")  # version 1, type String
    return b"\x08\x01" + entry(b"type", string_value) + entry(b"primitive_functions", b"\x10\x09")


CNTK_FILES = {
    "legacy.model": b"B\x00C\x00N\x00\x00\x00" + bytes(64),
    "large.model": (0x636E746B).to_bytes(4, "little") + bytes(64),
    "v2.model": _cntk_v2_bytes(),
    "anything.dnn": b"\x00\x01\x02",
    "config.cntk": b"command = train\n",
}


@pytest.mark.parametrize("name", sorted(CNTK_FILES))
def test_cntk_sources_get_the_reason_and_the_alternative(name, tmp_path, capsys):
    path = tmp_path / name
    path.write_bytes(CNTK_FILES[name])
    out = tmp_path / "c.onnx"
    code, err = cli(capsys, "convert", path, "-o", out)
    assert code == 2
    assert_one_line_error(err)
    assert "CNTK is not supported" in err and "Python 3.6" in err and "ONNX" in err
    assert not out.exists()


def test_model_suffix_is_told_apart_by_content(tmp_path):
    from onnxgate.plugins import detect
    from onnxgate.plugins.manager import Registry

    specs = Registry().converters()
    libsvm_file = Path(write(tmp_path)["source"])
    cntk_file = tmp_path / "net.model"
    cntk_file.write_bytes(CNTK_FILES["legacy.model"])
    assert detect.for_path(libsvm_file, specs).name == "libsvm"
    assert detect.for_path(cntk_file, specs).name == "cntk"
    other = tmp_path / "other.model"
    other.write_bytes(b"something else entirely\n")
    with pytest.raises(detect.DetectionError):
        detect.for_path(other, specs)


def test_cntk_spec_and_detection_import_no_framework(tmp_path):
    """The contract's detection check (CNTK cannot pass the conversion checks)."""
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from onnxgate.plugins import detect\n"
        "from onnxgate.plugins.manager import Registry\n"
        "reg = Registry()\n"
        "for p in sys.argv[1:]:\n"
        "    print(detect.for_path(Path(p), reg.converters()).name)\n"
        f"heavy = {list(HEAVY_MODULES)!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))\n"
    )
    paths = []
    for name, data in CNTK_FILES.items():
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))
    proc = subprocess.run([sys.executable, "-c", script, *paths], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[:-1] == ["cntk"] * len(paths)
    assert json.loads(lines[-1]) == []
