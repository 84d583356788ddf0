"""CI mode, baseline discovery and --gate-config apply identically to the
CLI, the Python API and `onnxgate batch` (one builder: gate.config.resolve)."""

import json
import shutil

import numpy as np
import pytest

from onnxgate.pipeline import api
from onnxgate.pipeline.cli import app as cli


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    import skops.io
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    tmp = tmp_path_factory.mktemp("src")
    X, y = load_iris(return_X_y=True)
    skops.io.dump(LogisticRegression(max_iter=300).fit(X, y), tmp / "iris.skops")
    np.save(tmp / "x.npy", X[:6].astype(np.float32))
    (tmp / "gate.toml").write_text("[outputs.probabilities]\nrtol = 1e-3\natol = 1e-5\n")
    return tmp


def _what_ran(report):
    return {
        "checks": [c["name"] for c in report["checks"]],
        "cases": [c["name"] for c in report["cases"]],
        "edges": sorted(c["edge"] for c in report["cases"] if c.get("kind") == "edge"),
        "rules": report["gate"]["outputs"],
        "ci": report["gate"]["ci"],
    }


def test_cli_api_and_batch_run_the_same_checks_under_ci(source, tmp_path, monkeypatch):
    monkeypatch.setenv("CI", "true")
    sample, rules = source / "x.npy", source / "gate.toml"
    folders = {k: tmp_path / k for k in ("cli", "api", "batch")}
    for folder in folders.values():
        folder.mkdir()
    # an accepted baseline beside each entry point's output model
    seed = tmp_path / "seed.onnx"
    assert (
        cli.main(
            [
                "convert",
                str(source / "iris.skops"),
                "-o",
                str(seed),
                "--sample",
                str(sample),
                "--no-latency",
                "--accept-baseline",
            ]
        )
        == 0
    )
    for folder in folders.values():
        shutil.copy(str(seed) + ".baseline.json", folder / "iris.onnx.baseline.json")

    assert (
        cli.main(
            [
                "convert",
                str(source / "iris.skops"),
                "-o",
                str(folders["cli"] / "iris.onnx"),
                "--sample",
                str(sample),
                "--gate-config",
                str(rules),
                "--no-latency",
                "--report",
                str(folders["cli"] / "iris.report.json"),
            ]
        )
        == 0
    )
    result = api.convert(
        str(source / "iris.skops"),
        output=folders["api"] / "iris.onnx",
        sample=sample,
        gate_config=rules,
        latency=False,
        report=folders["api"] / "iris.report.json",
    )
    assert result.passed
    manifest = tmp_path / "manifest.json"
    manifest.write_text(
        json.dumps({"models": [{"name": "iris", "source": str(source / "iris.skops"), "sample": str(sample)}]})
    )
    assert cli.main(["batch", str(manifest), "--out", str(folders["batch"]), "--gate-config", str(rules)]) == 0

    reports = {k: json.loads((f / "iris.report.json").read_text()) for k, f in folders.items()}
    ran = {k: _what_ran(r) for k, r in reports.items()}
    assert ran["cli"] == ran["api"] == ran["batch"]
    assert ran["cli"]["ci"] and ran["cli"]["edges"] == ["inf", "large", "nan", "zeros"]
    assert "edge_values" in ran["cli"]["checks"] and "drift" in ran["cli"]["checks"]
    assert ran["cli"]["rules"] == {"probabilities": {"rtol": 1e-3, "atol": 1e-5}}
    for name, report in reports.items():  # each found the baseline beside its own model
        assert report["drift"]["baseline"] == str(folders[name] / "iris.onnx.baseline.json")
        assert report["drift"]["passed"]


def test_api_validate_finds_the_baseline_beside_the_model_and_explicit_gate_wins(source, tmp_path, monkeypatch):
    from onnxgate.pipeline.gate.config import GateConfig
    from onnxgate.plugins.errors import UsageError

    model = tmp_path / "iris.onnx"
    assert (
        cli.main(
            [
                "convert",
                str(source / "iris.skops"),
                "-o",
                str(model),
                "--sample",
                str(source / "x.npy"),
                "--no-latency",
                "--accept-baseline",
            ]
        )
        == 0
    )
    monkeypatch.setenv("CI", "1")
    found = api.validate(str(source / "iris.skops"), model, sample=source / "x.npy", latency=False)
    assert found.report.drift["baseline"] == str(model) + ".baseline.json"
    assert any(c.name == "edge_values" for c in found.report.checks)
    explicit = api.validate(
        str(source / "iris.skops"), model, sample=source / "x.npy", latency=False, gate=GateConfig()
    )
    assert explicit.report.drift is None and not any(c.name == "edge_values" for c in explicit.report.checks)
    with pytest.raises(UsageError, match="gate=GateConfig.*not both"):
        api.validate(str(source / "iris.skops"), model, gate=GateConfig(), ci=True)
