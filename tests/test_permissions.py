"""Files and folders onnxgate writes get the permissions a plain write gives
(0666/0777 minus the umask), not the 0600/0700 of the temp files they are
renamed from; and a failed write leaves no temp file behind."""

import os
import stat

import numpy as np
import pytest

from onnxgate.pipeline.cli import app as cli
from onnxgate.pipeline.core import atomic
from onnxgate.pipeline.deployment import package, record
from onnxgate.pipeline.deployment.registry import LocalRegistry


@pytest.fixture
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def _every_path(root):
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            yield os.path.join(folder, name)


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077], indirect=True)
def test_convert_validate_and_deploy_outputs_follow_the_umask(tmp_path, umask):
    import skops.io
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    source = tmp_path / "iris.skops"
    skops.io.dump(LogisticRegression(max_iter=300).fit(X, y), source)
    np.save(tmp_path / "x.npy", X[:6].astype(np.float32))
    model = tmp_path / "iris.onnx"
    assert (
        cli.main(
            [
                "convert",
                str(source),
                "-o",
                str(model),
                "--sample",
                str(tmp_path / "x.npy"),
                "--report",
                str(tmp_path / "convert.json"),
                "--html",
                str(tmp_path / "r.html"),
                "--junit",
                str(tmp_path / "r.xml"),
                "--summary",
                str(tmp_path / "r.md"),
                "--accept-baseline",
                "--no-latency",
            ]
        )
        == 0
    )
    assert (
        cli.main(
            [
                "validate",
                str(source),
                str(model),
                "--sample",
                str(tmp_path / "x.npy"),
                "--report",
                str(tmp_path / "validate.json"),
                "--no-latency",
            ]
        )
        == 0
    )
    file_mode, dir_mode = 0o666 & ~umask, 0o777 & ~umask
    written = [
        "iris.onnx",
        "iris.onnx.onnxgate.json",
        "iris.onnx.baseline.json",
        "convert.json",
        "validate.json",
        "r.html",
        "r.xml",
        "r.md",
    ]
    for name in written:
        assert _mode(tmp_path / name) == file_mode, name

    gate = record.check(model)
    version = LocalRegistry(tmp_path / "registry").register(gate, "iris")
    pkg = package.build(gate, tmp_path / "pkg")
    for root in (version.path, pkg):
        assert _mode(root) == dir_mode, root
        for path in _every_path(root):
            assert _mode(path) == (dir_mode if os.path.isdir(path) else file_mode), path
    leftovers = [p for p in _every_path(tmp_path) if ".tmp" in os.path.basename(p) or "probe" in p]
    assert not leftovers


def test_a_failed_write_leaves_neither_temp_file_nor_target(tmp_path):
    target = tmp_path / "model.onnx"
    with pytest.raises(TypeError):
        atomic.write_bytes(target, object())  # fails inside the temp file's write
    assert sorted(os.listdir(tmp_path)) == []
    atomic.write_bytes(target, b"old")
    with pytest.raises(TypeError):
        atomic.write_bytes(target, object())
    assert sorted(os.listdir(tmp_path)) == ["model.onnx"] and target.read_bytes() == b"old"


def test_umask_is_read_without_changing_it():
    old = os.umask(0o027)
    try:
        assert atomic.umask() == 0o027 and atomic.umask() == 0o027
    finally:
        os.umask(old)
