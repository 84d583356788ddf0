"""Bad input: one clear line, the documented exit code, nothing written."""

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from onnxgate.plugins.testing import assert_clean_error, run_cli

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def skops_model(tmp_path_factory):
    import skops.io as sio
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    path = tmp_path_factory.mktemp("m") / "clf.skops"
    sio.dump(LogisticRegression(max_iter=300).fit(X, y), path)
    return path


def _assert_nothing_written(folder, before):
    assert sorted(os.listdir(folder)) == before


def _check(tmp_path, args, exit_code=2, expect_text=""):
    before = sorted(os.listdir(tmp_path))
    proc = run_cli(*args, "-o", str(tmp_path / "out.onnx"), "--report", str(tmp_path / "out.json"))
    assert_clean_error(proc, exit_code)
    assert expect_text in proc.stderr
    _assert_nothing_written(tmp_path, before)
    return proc


def test_missing_file(tmp_path):
    _check(tmp_path, ["convert", str(tmp_path / "nope.skops")], expect_text="no such file")


def test_directory(tmp_path):
    (tmp_path / "d").mkdir()
    _check(tmp_path, ["convert", str(tmp_path / "d")], expect_text="directory")


def test_empty_file(tmp_path):
    (tmp_path / "m.skops").write_bytes(b"")
    _check(tmp_path, ["convert", str(tmp_path / "m.skops")], expect_text="empty")


def test_truncated_file(tmp_path, skops_model):
    data = skops_model.read_bytes()
    (tmp_path / "t.skops").write_bytes(data[: len(data) // 2])
    _check(tmp_path, ["convert", str(tmp_path / "t.skops")])


@pytest.mark.parametrize("suffix", [".skops", ".pt2", ".pt"])
def test_random_bytes_with_model_suffix(tmp_path, suffix):
    (tmp_path / f"r{suffix}").write_bytes(np.random.default_rng(1).bytes(2048))
    _check(tmp_path, ["convert", str(tmp_path / f"r{suffix}")])


def test_unknown_suffix(tmp_path):
    (tmp_path / "m.xyz").write_bytes(b"hello")
    _check(tmp_path, ["convert", str(tmp_path / "m.xyz")], expect_text="no converter recognises")


def test_unknown_framework(tmp_path, skops_model):
    _check(tmp_path, ["convert", str(skops_model), "--framework", "nosuch"], expect_text="unknown framework")


def test_sample_with_wrong_names(tmp_path, skops_model):
    # one array for a one-input model matches by position whatever its name;
    # two arrays that match no input are an error naming both sides and --input-map
    np.savez(tmp_path / "s.npz", wrong=np.ones((2, 4), np.float32), other=np.ones((2, 4), np.float32))
    _check(
        tmp_path,
        ["convert", str(skops_model), "--sample", str(tmp_path / "s.npz")],
        expect_text="match neither the source model's inputs ['X']",
    )


def test_sample_with_wrong_shape(tmp_path, skops_model):
    np.savez(tmp_path / "s.npz", X=np.ones((2, 7), np.float32))
    _check(tmp_path, ["convert", str(skops_model), "--sample", str(tmp_path / "s.npz")])


def test_unreadable_sample(tmp_path, skops_model):
    (tmp_path / "s.npz").write_bytes(b"not a zip")
    _check(tmp_path, ["convert", str(skops_model), "--sample", str(tmp_path / "s.npz")], expect_text="sample")


def test_output_folder_missing(tmp_path, skops_model):
    proc = run_cli("convert", str(skops_model), "-o", str(tmp_path / "no" / "such" / "m.onnx"))
    assert_clean_error(proc, 2)
    assert "does not exist" in proc.stderr


def test_output_folder_not_writable(tmp_path, skops_model):
    # /sys refuses new files even to root, unlike a chmod'ed folder
    ro = Path("/sys") if os.geteuid() == 0 else tmp_path / "ro"
    if ro != Path("/sys"):
        ro.mkdir()
        ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    proc = run_cli("convert", str(skops_model), "-o", str(ro / "m.onnx"))
    assert_clean_error(proc, 2)
    assert "not writable" in proc.stderr


def test_output_path_is_a_directory(tmp_path, skops_model):
    (tmp_path / "m.onnx").mkdir()
    proc = run_cli("convert", str(skops_model), "-o", str(tmp_path / "m.onnx"))
    assert_clean_error(proc, 2)


def test_bad_module_reference(tmp_path):
    _check(tmp_path, ["convert", "no_such_module_xyz:model"], expect_text="cannot import")


def test_inspect_reports_provenance(tmp_path, skops_model):
    out = tmp_path / "m.onnx"
    assert run_cli("convert", str(skops_model), "-o", str(out)).returncode == 0
    proc = run_cli("inspect", str(out))
    assert proc.returncode == 0
    assert "converter: sklearn" in proc.stdout and "source_sha256" in proc.stdout
    assert_clean_error(run_cli("inspect", str(tmp_path / "missing.onnx")), 2)


def test_a_reader_that_leaves_early_ends_the_command_quietly():
    """`onnxgate plugins | head`: no error line and no traceback, exit 141 as a
    shell reports for a writer whose reader left."""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "onnxgate.pipeline.cli", "plugins", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # the reader is gone before the command writes
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert "error" not in stderr and "Traceback" not in stderr
