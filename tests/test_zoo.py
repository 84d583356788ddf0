"""The zoo (fixtures/zoo/): 60+ models built the way users build them, in
the formats they save, with every sample form, through the real CLI.

Every case must end as it declares (pass, a validation failure the gate
catches, unverified, or a clean exit 2/3 for a converter's limit), and
docs/compatibility.md must be the document these results generate.
Cost on the project machine (2 cores): 1.4 minutes when quiet, 6.4 minutes
when shared with other jobs (build, then every case in one interpreter); the
transformers family (42 cases) adds about 2 minutes (build 25 s, run 87 s).
"""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "fixtures"))

pytest.importorskip("torch")
pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    from zoo.build import build
    from zoo.run import run_case

    out = tmp_path_factory.mktemp("zoo")
    rows = [run_case(case, out) for case in build(out)]
    (ROOT / "artifacts").mkdir(exist_ok=True)
    (ROOT / "artifacts" / "zoo-results.json").write_text(json.dumps(rows, indent=1, default=str))
    return rows


def test_the_zoo_holds_at_least_60_models(results):
    models = {r["model"] for r in results}
    assert len(models) >= 60, sorted(models)
    assert {r["framework"] for r in results} >= {
        "PyTorch",
        "TensorFlow/Keras",
        "scikit-learn",
        "XGBoost",
        "LightGBM",
        "ONNX",
    }
    forms = {r["sample_form"].split(" ")[0] for r in results}
    assert forms >= {"npy", "npz", "npz-source", "npz-onnx", "csv", "none"}, forms


def test_every_case_ends_as_declared(results):
    wrong = [
        (r["model"], r["format"], r["sample_form"], r["expect"], r["got"], r["message"][:300])
        for r in results
        if not r["ok"]
    ]
    assert not wrong, wrong


def test_every_non_pass_names_its_converter_limit(results):
    unexplained = [(r["model"], r["format"]) for r in results if r["expect"] != "pass" and not r["reason"]]
    assert not unexplained, unexplained


def test_errors_are_one_clean_line(results):
    for r in results:
        if r["got"].startswith("exit-"):
            assert r["message"].startswith("onnxgate: error:") and "Traceback" not in r["message"], r


def test_compatibility_doc_is_generated_from_these_results(results, tmp_path):
    from zoo.doc import verdict_rows, write_doc

    write_doc(results, tmp_path / "compatibility.md")
    fresh = verdict_rows((tmp_path / "compatibility.md").read_text())
    committed = verdict_rows((ROOT / "docs" / "compatibility.md").read_text())
    assert committed == fresh, (
        "docs/compatibility.md is stale: python fixtures/zoo/run.py OUT --doc docs/compatibility.md"
    )
