"""Samples with named columns (a CSV header, Parquet, a DataFrame) for models
trained on DataFrames: scikit-learn pipelines that pick columns by name get one
typed ONNX input per column; numeric models keep one input X ordered by name."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from onnxgate.plugins.testing import assert_clean_error, run_cli

pd = pytest.importorskip("pandas")
pytest.importorskip("sklearn")
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.datasets import load_iris
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler


def houses(rows: int = 80, seed: int = 0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.normal(40, 10, rows),
            "rooms": rng.integers(1, 6, rows),
            "city": rng.choice(["paris", "lyon", "nice"], rows),
            "income ($)": rng.normal(3000, 500, rows),
            "color": rng.choice(["red", "blue"], rows),
        }
    )
    frame.loc[[3, 17], "age"] = np.nan
    frame.loc[5, "income ($)"] = np.nan
    target = frame["income ($)"].fillna(3000) / 1000 + frame["rooms"] + (frame["city"] == "paris")
    return frame, target


def by_name_classifier():
    frame, target = houses()
    numeric = make_pipeline(SimpleImputer(), StandardScaler())
    columns = ColumnTransformer(
        [
            ("num", numeric, ["age", "rooms", "income ($)"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["city", "color"]),
        ]
    )
    model = make_pipeline(columns, LogisticRegression(max_iter=500))
    return model.fit(frame, (target > target.median()).astype(int)), frame


def by_selector_regressor():
    frame, target = houses()
    frame = frame.fillna(0)
    columns = ColumnTransformer(
        [
            ("num", StandardScaler(), make_column_selector(dtype_include="number")),
            ("cat", OneHotEncoder(handle_unknown="ignore"), make_column_selector(dtype_include=object)),
        ]
    )
    return make_pipeline(columns, Ridge()).fit(frame, target), frame


def numeric_on_frame():
    X, y = load_iris(return_X_y=True, as_frame=True)
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y), X


def _inputs(onnx_model) -> dict[str, int]:
    return {i.name: i.type.tensor_type.elem_type for i in onnx_model.graph.input}


def _convert(model, sample):
    from onnxgate.pipeline import convert

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*feature names.*")  # the original gets its own columns
        return convert(model, sample=sample, latency=False)


# --- item 6: one ONNX input per column --------------------------------------------


@pytest.mark.parametrize("form", ["dataframe", "csv", "csv_reordered_extra", "parquet"])
def test_pipeline_by_column_name_gets_one_typed_input_per_column(tmp_path, form):
    model, frame = by_name_classifier()
    rows = frame.iloc[:15]
    if form == "dataframe":
        sample = rows
    elif form == "parquet":
        sample = tmp_path / "rows.parquet"
        rows.to_parquet(sample)
    else:
        sample = tmp_path / "rows.csv"
        if form == "csv_reordered_extra":  # another column order and a column the model ignores
            rows = rows.assign(notes="n/a")[["notes", "color", "income ($)", "city", "rooms", "age"]]
        rows.to_csv(sample, index=False)
    result = _convert(model, sample)
    assert result.passed, result.failures
    # float and string tensors, under the columns' own names; the int column feeds numeric steps: float
    assert _inputs(result.model) == {"age": 1, "rooms": 1, "city": 8, "income ($)": 1, "color": 8}
    case = result.report.cases[0]
    assert case.name == "batch_15"
    assert {o.name for o in case.outputs} == {"label", "probabilities"}


def test_int_columns_are_float_for_numeric_steps_and_int64_for_encoders(tmp_path):
    """An int column first in an imputer's branch (skl2onnx's imputer refuses
    an int64 input), and int categories one-hot encoded as integers."""
    from sklearn.ensemble import GradientBoostingClassifier

    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "tenure": rng.integers(0, 72, 200),
            "monthly": rng.normal(70, 20, 200),
            "plan": rng.choice([1, 2, 3], 200),
            "contract": rng.choice(["month", "year"], 200),
        }
    )
    frame.loc[[4, 9], "monthly"] = np.nan
    columns = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["tenure", "monthly"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan", "contract"]),
        ]
    )
    target = (frame.tenure < 20) & (frame.contract == "month")
    model = make_pipeline(columns, GradientBoostingClassifier(n_estimators=10)).fit(frame, target)
    sample = tmp_path / "rows.csv"
    frame.iloc[:20].to_csv(sample, index=False)
    result = _convert(model, sample)
    assert result.passed, result.failures
    assert _inputs(result.model) == {"tenure": 1, "monthly": 1, "plan": 7, "contract": 8}


def test_regressor_with_column_selectors(tmp_path):
    model, frame = by_selector_regressor()
    path = tmp_path / "rows.csv"
    frame.iloc[:12].to_csv(path, index=False)
    result = _convert(model, path)
    assert result.passed, result.failures
    assert _inputs(result.model)["city"] == 8 and _inputs(result.model)["rooms"] == 1  # a number column: float


def test_digits_in_a_string_column_stay_strings(tmp_path):
    """A CSV cell is text until the model says the column's type: zip codes stay strings."""
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"zip": rng.choice(["02139", "75001", "10115"], 40), "size": rng.normal(size=40)})
    columns = ColumnTransformer([("zip", OneHotEncoder(), ["zip"]), ("size", "passthrough", ["size"])])
    model = make_pipeline(columns, Ridge()).fit(frame, rng.normal(size=40))
    path = tmp_path / "rows.csv"
    frame.iloc[:9].to_csv(path, index=False)
    result = _convert(model, path)
    assert result.passed, result.failures
    assert _inputs(result.model)["zip"] == 8


def test_strings_cannot_be_synthesised():
    from onnxgate.pipeline import convert
    from onnxgate.plugins.errors import UsageError

    model, _ = by_name_classifier()
    with pytest.raises(UsageError, match="'city' takes strings.*--sample"):
        convert(model)


# --- item 6: numeric models trained on a DataFrame keep one input X -----------------


def test_numeric_frame_model_orders_header_columns_by_name(tmp_path):
    model, X = numeric_on_frame()
    path = tmp_path / "rows.csv"
    X.iloc[::10, ::-1].to_csv(path, index=False)  # columns reversed
    result = _convert(model, path)
    assert result.passed, result.failures
    assert list(_inputs(result.model)) == ["X"]
    # both sides get the same X either way: check the order the sample was bound in
    from onnxgate.converters import sklearn as sklearn_converter
    from onnxgate.pipeline.conversion.samples import read_sample

    bound = read_sample(path, sklearn_converter.signature(model))[None]
    np.testing.assert_allclose(bound, X.iloc[::10].to_numpy(np.float32))
    assert not np.allclose(bound, X.iloc[::10, ::-1].to_numpy(np.float32))


def test_numeric_frame_model_takes_csv_without_header_and_dataframe(tmp_path):
    model, X = numeric_on_frame()
    path = tmp_path / "rows.csv"
    X.iloc[::10].to_csv(path, index=False, header=False)
    assert _convert(model, path).passed
    assert _convert(model, X.iloc[::10, [2, 0, 3, 1]]).passed


def test_numeric_model_without_names_still_takes_a_header(tmp_path):
    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    path = tmp_path / "rows.csv"
    pd.DataFrame(X[::10], columns=["a", "b", "c", "d"]).to_csv(path, index=False)
    result = _convert(model, path)
    assert result.passed and result.report.cases[0].name == "batch_15"  # the header is not a row


@pytest.mark.parametrize("framework", ["xgboost", "lightgbm"])
def test_boosters_trained_on_frames_order_columns_by_name(tmp_path, framework):
    module = pytest.importorskip(framework)
    X, y = load_iris(return_X_y=True, as_frame=True)
    cls = module.XGBClassifier if framework == "xgboost" else module.LGBMClassifier
    extra = {"verbose": -1} if framework == "lightgbm" else {}
    model = cls(n_estimators=5, max_depth=3, **extra).fit(X, y)
    path = tmp_path / "rows.csv"
    X.iloc[::10, ::-1].to_csv(path, index=False)
    result = _convert(model, path)
    assert result.passed, result.failures


def test_booster_inside_a_column_pipeline(tmp_path):
    xgboost = pytest.importorskip("xgboost")
    frame, target = houses()
    columns = ColumnTransformer(
        [
            ("num", SimpleImputer(), ["age", "rooms", "income ($)"]),
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["city", "color"]),
        ]
    )
    model = make_pipeline(columns, xgboost.XGBRegressor(n_estimators=5, max_depth=3)).fit(frame, target)
    path = tmp_path / "rows.csv"
    frame.iloc[:10].to_csv(path, index=False)
    result = _convert(model, path)
    assert result.passed, result.failures


# --- the command line: validate, batch, errors ---------------------------------------


@pytest.fixture
def column_files(tmp_path):
    import skops.io as sio

    model, frame = by_name_classifier()
    source = tmp_path / "houses.skops"
    sio.dump(model, source)
    sample = tmp_path / "rows.csv"
    frame.iloc[:10].to_csv(sample, index=False)
    return source, sample, frame


def test_convert_and_validate_from_the_command_line(column_files, tmp_path):
    source, sample, _ = column_files
    out = tmp_path / "houses.onnx"
    proc = run_cli("convert", str(source), "--sample", str(sample), "-o", str(out), "--no-latency")
    assert proc.returncode == 0, proc.stderr
    assert "feature names" not in proc.stderr
    proc = run_cli("validate", str(source), str(out), "--sample", str(sample), "--no-latency")
    assert proc.returncode == 0, proc.stderr


def test_batch_manifest_takes_header_and_parquet_samples(column_files, tmp_path):
    from onnxgate.pipeline.cli import main

    source, sample, frame = column_files
    frame.iloc[:10].to_parquet(tmp_path / "rows.parquet")
    manifest = tmp_path / "models.toml"
    manifest.write_text(
        f'[[models]]\nname = "csv"\nsource = "{source}"\nsample = "{sample}"\n\n'
        f'[[models]]\nname = "parquet"\nsource = "{source}"\nsample = "{tmp_path / "rows.parquet"}"\n'
    )
    assert main(["batch", str(manifest), "--out", str(tmp_path / "out"), "--no-latency"]) == 0


def test_missing_columns_are_one_line_listing_both(column_files, tmp_path):
    source, _, frame = column_files
    path = tmp_path / "short.csv"
    frame.drop(columns=["city"]).iloc[:5].to_csv(path, index=False)
    proc = run_cli("convert", str(source), "--sample", str(path), "-o", str(tmp_path / "x.onnx"))
    assert_clean_error(proc, 2)
    assert "['city'] are missing" in proc.stderr and "'color'" in proc.stderr
    assert not (tmp_path / "x.onnx").exists()


def test_header_not_matching_a_numeric_frame_model(tmp_path):
    import skops.io as sio

    model, X = numeric_on_frame()
    source = tmp_path / "iris.skops"
    sio.dump(model, source)
    path = tmp_path / "rows.csv"
    X.iloc[::10].rename(columns={"petal width (cm)": "petal_width"}).to_csv(path, index=False)
    proc = run_cli("validate", str(source), "--sample", str(path))
    assert_clean_error(proc, 2)
    assert "'petal width (cm)'" in proc.stderr and "'petal_width'" in proc.stderr


HOSTILE = {
    "not_parquet.parquet": (b"PAR1 this is not parquet at all", "not a readable Parquet file"),
    "ragged.csv": (b"age,rooms,city,income ($),color\n1,2,paris,3,red\n1,2,paris\n", "line 3 has 3 columns"),
    "duplicate.csv": (b"age,age,city,income ($),color\n1,2,paris,3,red\n", "names ['age'] more than once"),
    "string_in_number.csv": (
        b"age,rooms,city,income ($),color\n1,2,paris,3,red\nold,2,lyon,3,blue\n",
        "column 'age' takes numbers but line 3 holds 'old'",
    ),
    "header_only.csv": (b"age,rooms,city,income ($),color\n", "a header and no rows"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_samples_are_one_line_errors(column_files, tmp_path, name, capsys):
    from onnxgate.pipeline.cli import main

    source, _, _ = column_files
    content, message = HOSTILE[name]
    path = tmp_path / name
    path.write_bytes(content)
    assert main(["validate", str(source), "--sample", str(path), "--no-latency"]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("onnxgate: error:")]
    assert len(errors) == 1 and message in errors[0], err
    assert "Traceback" not in err


def test_parquet_without_pyarrow_names_the_extra(tmp_path, monkeypatch):
    import sys

    from onnxgate.pipeline.conversion.inputs import load_sample
    from onnxgate.plugins.errors import UsageError

    path = tmp_path / "rows.parquet"
    houses()[0].to_parquet(path)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # as if pyarrow were not installed
    with pytest.raises(UsageError, match=r"onnxgate\[tabular\]"):
        load_sample(path)


def test_dataframe_with_duplicate_columns_is_refused():
    from onnxgate.plugins.errors import UsageError

    model, frame = by_name_classifier()
    doubled = pd.concat([frame[["age"]], frame], axis=1)
    with pytest.raises(UsageError, match="more than once"):
        _convert(model, doubled)


def test_a_saved_model_keeps_its_column_names_for_later_samples(tmp_path):
    """The ONNX model records X's column names: validating the file alone (no
    source) still orders a header's columns by name."""
    import onnx

    from onnxgate.converters import onnx as onnx_converter
    from onnxgate.pipeline.conversion.samples import read_sample

    model, X = numeric_on_frame()
    path = tmp_path / "iris.onnx"
    _convert(model, X.iloc[::10]).save(path)
    signature = onnx_converter.signature(onnx.load(path))
    assert signature[0].columns == tuple(X.columns)
    rows = tmp_path / "rows.csv"
    X.iloc[::10, ::-1].to_csv(rows, index=False)
    np.testing.assert_allclose(read_sample(rows, signature)[None], X.iloc[::10].to_numpy(np.float32))


@pytest.mark.parametrize("framework", ["xgboost", "lightgbm"])
def test_native_booster_files_from_frames_order_header_columns(tmp_path, framework):
    module = pytest.importorskip(framework)
    X, y = load_iris(return_X_y=True, as_frame=True)
    if framework == "xgboost":
        source = tmp_path / "model.json"
        module.XGBClassifier(n_estimators=5, max_depth=3).fit(X, y).get_booster().save_model(source)
    else:
        source = tmp_path / "model.txt"
        module.LGBMClassifier(n_estimators=5, verbose=-1).fit(X, y).booster_.save_model(str(source))
        # trained on arrays: Column_0... are no names, so any header feeds by position
        plain = tmp_path / "plain.txt"
        module.LGBMClassifier(n_estimators=5, verbose=-1).fit(X.to_numpy(), y).booster_.save_model(str(plain))
        path = tmp_path / "any.csv"
        X.iloc[::10].set_axis(list("abcd"), axis=1).to_csv(path, index=False)
        assert _convert(str(plain), path).passed
    rows = tmp_path / "rows.csv"
    X.iloc[::10, ::-1].to_csv(rows, index=False)
    result = _convert(str(source), rows)
    assert result.passed, result.failures
    from onnxgate.converters.common import recorded_columns
    from onnxgate.pipeline.conversion.samples import read_sample
    from onnxgate.plugins.manager import Registry

    spec = Registry().converter(framework)
    bound = read_sample(rows, spec.inputs(spec.load(source, False), None))[None]
    np.testing.assert_allclose(bound, X.iloc[::10].to_numpy(np.float32))  # in the model's order

    assert recorded_columns(result.model)["X"] in (list(X.columns), [c.replace(" ", "_") for c in X.columns])


def test_float64_run_of_a_frame_model_gets_its_frame():
    """The noise floor's float64 run feeds a DataFrame-fitted model its own
    columns (float ones in float64), as the float32 run does."""
    from onnxgate.converters import sklearn as converter

    model, frame = by_name_classifier()
    rows = frame.iloc[:6]

    def column(name, dtype):
        return rows[[name]].to_numpy().astype(dtype)

    inputs = {"age": column("age", np.float32), "rooms": column("rooms", np.int64)}
    inputs |= {
        "income ($)": column("income ($)", np.float32),
        "city": column("city", str),
        "color": column("color", str),
    }
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*feature names.*")
        label, proba = converter.run_float64(model, inputs)
    np.testing.assert_array_equal(label, model.predict(rows))
    np.testing.assert_allclose(proba, model.predict_proba(rows), rtol=1e-6)
    text_only = make_pipeline(OneHotEncoder(), LogisticRegression()).fit(frame[["city", "color"]], frame["rooms"] > 2)
    strings = {"city": inputs["city"], "color": inputs["color"]}
    assert converter.run_float64(text_only, strings) is None  # text alone: no float32 to measure


def test_api_validate_takes_a_dataframe_sample(tmp_path):
    from onnxgate.pipeline import validate

    model, frame = by_name_classifier()
    path = tmp_path / "houses.onnx"
    _convert(model, frame.iloc[:10]).save(path)
    result = validate(
        model, path, sample=frame.iloc[20:30][["color", "city", "age", "rooms", "income ($)"]], latency=False
    )
    assert result.passed, result.failures
