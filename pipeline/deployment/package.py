"""The deployable package: a self-contained folder Azure ML (or the local
server) can run as is.

    PACKAGE/
      model/model.onnx                 the validated bytes (AZUREML_MODEL_DIR)
      code/score.py                    Azure ML's init()/run() contract
      code/onnxgate-serving.json       model file name, sha256, request limits
      environment/conda.yaml           pins the onnxruntime that validated it
      environment/requirements.txt     the same pins for pip
      sample-request.json              built from the validation inputs
      expected-response.json           what the validated model answered
      validation-record.json           the gate's record for these bytes
      manifest.json                    every file's sha256

Built in a temporary folder beside the target, then renamed into place: a
failed build leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from onnxgate.pipeline.core import atomic
from onnxgate.pipeline.core.digest import sha256_path
from onnxgate.pipeline.deployment import record
from onnxgate.pipeline.deployment.record import DeployRefused, Gate
from onnxgate.pipeline.envs import serving as serving_env
from onnxgate.plugins.errors import UsageError

MODEL_FILE = "model.onnx"
SCORE_TEMPLATE = Path(__file__).with_name("score_template.py")


def environment_pins(ort_version: str) -> list:
    return serving_env.requirements(ort_version)


def conda_yaml(ort_version: str) -> str:
    pins = "\n".join(f"      - {r}" for r in environment_pins(ort_version))
    return (
        "# onnxgate: the onnxruntime that validated this model, and Azure ML's inference server\n"
        "name: onnxgate-serving\n"
        "channels:\n  - conda-forge\n"
        f"dependencies:\n  - python={serving_env.PYTHON_VERSION}\n  - pip\n  - pip:\n{pins}\n"
    )


def serving_settings(sha256: str, max_request_bytes: int | None = None, external=()) -> dict[str, Any]:
    from onnxgate.pipeline.deployment import score_template

    return {
        "model_file": MODEL_FILE,
        "sha256": sha256,
        "external_files": sorted(external),
        "max_request_bytes": int(max_request_bytes or score_template.DEFAULT_MAX_REQUEST_BYTES),
        "max_elements": score_template.DEFAULT_MAX_ELEMENTS,
    }


def _dump(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n", "utf-8")


def ort_version_of(gate: Gate) -> str:
    rec = gate.record or {}
    return rec.get("validated_with", {}).get("onnxruntime") or serving_env.current_onnxruntime()


def build(gate: Gate, out: Path, max_request_bytes: int | None = None) -> Path:
    """Write the package for a checked model to ``out`` (must not exist or be empty)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out}: exists and is not an empty folder; choose another -o")
    if not out.parent.is_dir():
        raise UsageError(f"{out}: folder {out.parent} does not exist")
    atomic.clean_stale(out.parent, f".{out.name}.")  # left by a killed run
    try:
        tmp = atomic.temp_dir(out.parent, f".{out.name}.{os.getpid()}.")
    except OSError as exc:
        raise UsageError(f"{out}: cannot write in {out.parent}: {exc.strerror or exc}") from None
    try:
        _fill(gate, tmp, max_request_bytes)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):  # full disk, read-only folder: an unusable output place
            raise UsageError(f"{out}: cannot write: {exc.strerror or exc}") from None
        raise
    return out


def _fill(gate: Gate, root: Path, max_request_bytes: int | None) -> None:
    ort = ort_version_of(gate)
    (root / "model").mkdir()
    # the model with its external-data files; the copy must hash to the checked sha256
    if record.copy_model(gate.model_path, root / "model", MODEL_FILE) != gate.sha256:
        raise DeployRefused(
            f"{gate.model_path}: its bytes are not the validated model's (or changed while it was being packaged)"
        )
    external = record.external_locations(root / "model" / MODEL_FILE)
    (root / "code").mkdir()
    shutil.copyfile(SCORE_TEMPLATE, root / "code" / "score.py")
    _dump(root / "code" / "onnxgate-serving.json", serving_settings(gate.sha256, max_request_bytes, external))
    (root / "environment").mkdir()
    (root / "environment" / "conda.yaml").write_text(conda_yaml(ort), "utf-8")
    (root / "environment" / "requirements.txt").write_text("\n".join(environment_pins(ort)) + "\n", "utf-8")
    smoke = (gate.record or {}).get("smoke") or {}
    if smoke:
        _dump(root / "sample-request.json", smoke["request"])
        _dump(root / "expected-response.json", smoke["response"])
    if gate.record:
        _dump(root / "validation-record.json", gate.record)
    if (gate.record or {}).get("model", {}).get("sha256") == gate.sha256:
        # score.py checks the model against it at init(): the record travels with the code
        _dump(root / "code" / "validation-record.json", gate.record)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    _dump(
        root / "manifest.json",
        {
            "model_sha256": gate.sha256,
            "onnxruntime": ort,
            "override": gate.override,
            "files": {str(p.relative_to(root)): sha256_path(p) for p in files},
        },
    )


def code_dir(package: Path) -> Path:
    return Path(package) / "code"


def model_dir(package: Path) -> Path:
    return Path(package) / "model"
