"""The serving environment is built by the same builder, lock and marker as
the isolated framework environments (envs.venv); tests/test_environments.py
covers the isolated side. Offline: pip only installs what it already has."""

import json
import sys

import pytest

from onnxgate.pipeline.envs import isolated, serving, venv
from onnxgate.plugins.errors import UsageError


@pytest.fixture
def serving_home(tmp_path, monkeypatch):
    monkeypatch.setenv(serving.HOME_ENV, str(tmp_path / "serving"))
    return tmp_path / "serving"


def test_serving_env_gets_the_shared_marker_and_create_again_is_a_no_op(serving_home, monkeypatch):
    monkeypatch.setattr(serving, "install_steps", lambda ort: [["--no-index", "pip"]])
    path = serving.create("1.0.0", python=sys.executable, quiet=True)
    marker = json.loads((path / venv.MARKER).read_text())
    assert venv.MARKER == isolated.MARKER and marker["requirements"] == serving.requirements("1.0.0")
    assert "pip" in marker["packages"] and marker["python_version"]
    assert serving.find("1.0.0") == path and venv.python_of(path).exists()
    before = (path / venv.MARKER).stat().st_mtime_ns
    assert serving.create("1.0.0", python=sys.executable, quiet=True) == path
    assert (path / venv.MARKER).stat().st_mtime_ns == before


def test_failed_serving_build_names_its_log_and_stays_unready(serving_home, monkeypatch):
    monkeypatch.setattr(serving, "install_steps", lambda ort: [["--no-index", "onnxgate-no-such-package"]])
    with pytest.raises(UsageError, match=r"pip install .*failed.*full log: .*ort-2\.0\.0\.log"):
        serving.create("2.0.0", python=sys.executable, quiet=True)
    with pytest.raises(UsageError, match="serve --setup"):
        serving.find("2.0.0")


def test_a_serving_env_built_before_the_shared_marker_still_counts(serving_home):
    old = serving.venv_dir("1.17.0")
    old.mkdir(parents=True)
    (old / serving.LEGACY_MARKER).write_text("azureml-inference-server-http==1.5.1\n")
    assert serving.find("1.17.0") == old
