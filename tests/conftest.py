"""Test-wide settings: frameworks write into $HOME on import, so point HOME
and the XDG folders at a throwaway directory before anything imports them."""

import os
import tempfile

# onnxgate's isolated environments (legacy frameworks, serving) are costly to
# build: keep them in the real onnxgate home, not in the throwaway HOME below.
os.environ.setdefault(
    "ONNXGATE_HOME",
    os.path.join(os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "onnxgate"),
)

_HOME = tempfile.mkdtemp(prefix="onnxgate-test-home-")
for var in ("HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "MPLCONFIGDIR", "KERAS_HOME"):
    os.environ[var] = os.path.join(_HOME, var.lower())
    os.makedirs(os.environ[var], exist_ok=True)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

# CI=true switches the CLI into CI mode (edge values on); tests that exercise
# it set it themselves, so the suite behaves the same on a laptop and in CI.
os.environ.pop("CI", None)
