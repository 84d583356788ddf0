"""The served model takes the records a user sends a tabular model: a flat list
per column, a list of row objects (bare or under "inputs"), coerced to each
input's type; bad records are 400s with a message. In-process through the
package's score.py, then over HTTP from the real Azure ML inference server."""

from __future__ import annotations

import json
import math
import urllib.request

import numpy as np
import pytest
from deploy_support import load_score
from test_tabular import by_name_classifier, numeric_on_frame

from onnxgate.pipeline.deployment import package, record, serve

pd = pytest.importorskip("pandas")


def _rows(frame) -> list[dict]:
    """Row objects as a client's JSON has them: NaN as null, numpy scalars as Python ones."""
    return [
        {
            k: (None if isinstance(v, float) and math.isnan(v) else v.item() if hasattr(v, "item") else v)
            for k, v in row.items()
        }
        for row in frame.to_dict(orient="records")
    ]


@pytest.fixture(scope="module")
def houses_pkg(tmp_path_factory):
    from onnxgate.pipeline import api

    tmp = tmp_path_factory.mktemp("houses")
    model, frame = by_name_classifier()
    sample = tmp / "rows.csv"
    frame.iloc[:10].to_csv(sample, index=False)  # rows 3 and 5 hold NaNs: the smoke request carries them
    path = tmp / "houses.onnx"
    api.convert(model, sample=sample, latency=False).save(path)
    return package.build(record.check(path), tmp / "pkg"), model, frame, path


@pytest.fixture(scope="module")
def iris_pkg(tmp_path_factory):
    from onnxgate.pipeline import api

    tmp = tmp_path_factory.mktemp("iris")
    model, X = numeric_on_frame()
    path = tmp / "iris.onnx"
    api.convert(model, sample=X.iloc[::10], latency=False).save(path)
    return package.build(record.check(path), tmp / "pkg"), model, X


def _requests(frame) -> dict[str, str]:
    rows = _rows(frame)
    columns = {c: [r[c] for r in rows] for c in frame.columns}
    return {
        "columns": json.dumps({"inputs": columns}),
        "rows": json.dumps(rows),
        "inputs_rows": json.dumps({"inputs": rows}),
    }


def _check_answer(body, model, frame):
    labels = np.asarray(body["outputs"]["label"]).ravel()
    np.testing.assert_array_equal(labels, model.predict(frame))
    np.testing.assert_allclose(body["outputs"]["probabilities"], model.predict_proba(frame), atol=1e-4)


@pytest.mark.parametrize("form", ["columns", "rows", "inputs_rows"])
def test_score_takes_records_per_column_model(houses_pkg, monkeypatch, form):
    pkg, model, frame, _ = houses_pkg
    score = load_score(pkg, monkeypatch, "tab_score_columns")
    rows = frame.iloc[20:26]
    status, body = score.score(_requests(rows)[form])
    assert status == 200, body
    _check_answer(body, model, rows)


@pytest.mark.parametrize("form", ["columns", "rows"])
def test_score_takes_records_for_a_named_2d_input(iris_pkg, monkeypatch, form):
    pkg, model, X = iris_pkg
    score = load_score(pkg, monkeypatch, "tab_score_iris")
    rows = X.iloc[::15]
    shuffled = json.loads(_requests(rows)[form])  # key order is not column order
    if form == "rows":
        shuffled = [dict(reversed(list(r.items()))) for r in shuffled]
    status, body = score.score(json.dumps(shuffled))
    assert status == 200, body
    _check_answer(body, model, rows)
    assert score.score(json.dumps({"inputs": {"X": rows.to_numpy().tolist()}}))[0] == 200  # the tensor form too


def test_string_column_takes_numbers_as_text(houses_pkg, monkeypatch):
    pkg, model, frame, _ = houses_pkg
    score = load_score(pkg, monkeypatch, "tab_score_text")
    row = _rows(frame.iloc[:1])[0]
    row["city"] = 75001  # an unknown category either way: coerced, not refused
    status, body = score.score(json.dumps([row]))
    assert status == 200, body


BAD_RECORDS = [
    ([{"age": 1.0}], "missing ["),
    ("rows_missing_key", "row 1 has no ['city']"),
    ("string_in_number", "column 'age' takes numbers, got 'old'"),
    ("bool_in_number", "booleans"),
    ("unknown_column", "unknown ['colour']"),
    ("nested_value", "the model expects rank 2"),
]


@pytest.mark.parametrize("case,message", BAD_RECORDS)
def test_bad_records_are_400_with_a_message(houses_pkg, monkeypatch, case, message):
    pkg, _, frame, _ = houses_pkg
    score = load_score(pkg, monkeypatch, "tab_score_bad")
    rows = _rows(frame.iloc[:2])
    if case == "rows_missing_key":
        del rows[1]["city"]
    elif case == "string_in_number":
        rows[1]["age"] = "old"
    elif case == "bool_in_number":
        rows[1]["rooms"] = True
    elif case == "unknown_column":
        rows[0]["colour"] = rows[1]["colour"] = "red"
    elif case == "nested_value":
        rows = {"inputs": {k: [[v] for v in vs] if k != "age" else [[[1.0]]] for k, vs in _columns(rows).items()}}
    else:
        rows = case
    status, body = score.score(json.dumps(rows))
    assert status == 400 and message in body["message"], body


def _columns(rows):
    return {c: [r[c] for r in rows] for c in rows[0]}


def test_missing_column_for_a_named_2d_input(iris_pkg, monkeypatch):
    pkg, _, X = iris_pkg
    score = load_score(pkg, monkeypatch, "tab_score_iris_bad")
    rows = _rows(X.iloc[:2].drop(columns=["petal width (cm)"]))
    status, body = score.score(json.dumps(rows))
    assert status == 400 and "missing ['petal width (cm)']" in body["message"], body


# --- the real server -------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(houses_pkg):
    from onnxgate.pipeline.envs import serving as serving_env

    venv = serving_env.create(quiet=True)  # no-op when ready
    with serve.start(houses_pkg[0], venv) as running:
        yield running


def _post(url, text: str):
    req = urllib.request.Request(url, data=text.encode(), method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_real_server_answers_records_and_refuses_bad_ones(server, houses_pkg):
    _, model, frame, onnx_path = houses_pkg
    # the smoke request (nested per-column tensors with NaN) still answers as validated
    assert serve.smoke_test(server.scoring_uri, record.load(onnx_path)).passed
    rows = frame.iloc[30:40]
    for form, text in _requests(rows).items():
        status, body = _post(server.scoring_uri, text)
        assert status == 200, (form, body)
        _check_answer(body, model, rows)
    bad = _rows(rows)
    del bad[0]["color"]
    status, body = _post(server.scoring_uri, json.dumps(bad))
    assert status == 400 and "row 0 has no ['color']" in body["message"], body
    status, body = _post(
        server.scoring_uri, json.dumps([{k: v for k, v in r.items() if k != "city"} for r in _rows(rows)])
    )
    assert status == 400 and "missing ['city']" in body["message"], body


def test_python_deploy_handle_sends_a_dataframe_by_column_name(tmp_path):
    """``LocalDeployment.predict(DataFrame)``: columns in any order reach their
    inputs by name (per-column model and a named 2-D input alike)."""
    from onnxgate.pipeline import api

    for model, frame in (by_name_classifier(), numeric_on_frame()):
        result = api.convert(model, sample=frame.iloc[:10], latency=False)
        with result.deploy("local", registry=tmp_path / "registry", name=type(model[-1]).__name__.lower()) as handle:
            rows = frame.iloc[40:46][list(reversed(frame.columns))]
            answer = handle.predict(rows)
        in_order = rows[list(frame.columns)]  # scikit-learn itself wants the training order
        np.testing.assert_array_equal(answer["label"], model.predict(in_order))
        np.testing.assert_allclose(answer["probabilities"], model.predict_proba(in_order), rtol=1e-4, atol=1e-5)
