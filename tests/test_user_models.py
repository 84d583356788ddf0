"""Models as users bring them (issue 10, section 2): each way onnxgate used
to stand in the way, one test per item. The whole zoo runs in test_zoo.py."""

import os

import numpy as np
import pytest

from onnxgate.pipeline import api
from onnxgate.plugins.errors import ConversionError, UntrustedSourceError, UsageError
from onnxgate.plugins.testing import assert_clean_error, run_cli

torch = pytest.importorskip("torch")


class Conv(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.bn, self.fc = torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(4, 2)

    def forward(self, images):
        return self.fc(self.bn(self.conv(images)).mean((2, 3)))


class Fixed(torch.nn.Module):
    """Batch baked in: runs at batch 2 only."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(12, 2)

    def forward(self, x):
        return self.fc(x.reshape(2, 12))


class TwoIn(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Linear(3, 2), torch.nn.Linear(5, 2)

    def forward(self, user, item):
        return self.a(user) + self.b(item)


# 1. an unnamed array belongs to the model's only input ----------------------
def test_npy_sample_feeds_a_torch_model_whose_argument_is_not_called_input(tmp_path):
    x = np.random.default_rng(0).standard_normal((3, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    result = api.convert(Conv().eval(), sample=tmp_path / "x.npy")
    assert result.passed, result.report.to_dict()["failures"]
    assert [i.name for i in result.model.graph.input] == ["images"]


# 2. names: ONNX names, source names, position; --input-map ------------------
@pytest.fixture(scope="module")
def user_export(tmp_path_factory):
    """A user's own export: their names, not forward()'s."""
    tmp = tmp_path_factory.mktemp("user")
    model = Conv().eval()
    x = torch.randn(2, 3, 8, 8)
    torch.export.save(torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("b")},)), tmp / "m.pt2")
    torch.onnx.export(
        model,
        (x,),
        str(tmp / "user.onnx"),
        dynamo=False,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
    )
    np.save(tmp / "x.npy", x.numpy())
    np.savez(tmp / "source_names.npz", images=x.numpy())
    np.savez(tmp / "onnx_names.npz", input=x.numpy())
    return tmp


@pytest.mark.parametrize("sample", ["x.npy", "source_names.npz", "onnx_names.npz", None])
def test_a_users_own_onnx_export_validates_with_every_sample_form(user_export, sample):
    result = api.validate(
        user_export / "m.pt2", user_export / "user.onnx", sample=user_export / sample if sample else None
    )
    assert result.passed, result.report.to_dict()["failures"]


def test_unmatched_names_list_both_sides_and_name_input_map(tmp_path):
    two = TwoIn().eval()
    np.savez(tmp_path / "s.npz", u=np.ones((2, 3), np.float32), i=np.ones((2, 5), np.float32))
    with pytest.raises(UsageError) as err:
        api.convert(two, sample=tmp_path / "s.npz")
    text = str(err.value)
    assert "['i', 'u']" in text and "user" in text and "item" in text and "--input-map" in text
    result = api.convert(two, sample=tmp_path / "s.npz", input_map={"u": "user", "i": "item"})
    assert result.passed, result.report.to_dict()["failures"]


def test_input_map_on_the_cli(tmp_path):
    torch.jit.script(TwoIn().eval()).save(str(tmp_path / "two.pt"))
    np.savez(tmp_path / "s.npz", u=np.ones((2, 3), np.float32), i=np.ones((2, 5), np.float32))
    bad = run_cli(
        "convert",
        str(tmp_path / "two.pt"),
        "--sample",
        str(tmp_path / "s.npz"),
        "-o",
        str(tmp_path / "o.onnx"),
        "--no-latency",
    )
    assert_clean_error(bad, 2)
    assert "--input-map SAMPLE_NAME=MODEL_INPUT" in bad.stderr
    good = run_cli(
        "convert",
        str(tmp_path / "two.pt"),
        "--sample",
        str(tmp_path / "s.npz"),
        "--input-map",
        "u=user",
        "--input-map",
        "i=item",
        "-o",
        str(tmp_path / "o.onnx"),
        "--no-latency",
    )
    assert good.returncode == 0, good.stderr


# 3. static-shape sources ------------------------------------------------------
def test_export_without_dynamic_shapes_validates_at_its_own_batch_without_a_sample(tmp_path):
    x = torch.randn(2, 3, 8, 8)
    torch.export.save(torch.export.export(Conv().eval(), (x,)), tmp_path / "static.pt2")
    result = api.convert(tmp_path / "static.pt2")
    assert result.passed, result.report.to_dict()["failures"]
    assert any("batch is static in the source" in n for n in result.report.to_dict()["notes"])
    assert [c.name for c in result.artifact.cases] == ["batch_2"]  # synthesised at the program's own batch


def test_traced_module_with_a_baked_in_batch_is_a_note_not_a_failure(tmp_path):
    x = torch.randn(2, 3, 4)
    torch.jit.trace(Fixed().eval(), x).save(str(tmp_path / "fixed.pt"))
    np.save(tmp_path / "x.npy", x.numpy())
    result = api.convert(tmp_path / "fixed.pt", sample=tmp_path / "x.npy")
    assert result.passed, result.report.to_dict()["failures"]
    assert any("batch is static in the source" in n for n in result.report.to_dict()["notes"])


def test_keras_model_with_a_fixed_batch(tmp_path):
    keras = pytest.importorskip("keras")
    inp = keras.Input((6,), batch_size=2, name="features")
    model = keras.Model(inp, keras.layers.Dense(2)(inp))
    model.save(tmp_path / "fixed.keras")
    result = api.convert(tmp_path / "fixed.keras")
    assert result.passed, result.report.to_dict()["failures"]
    assert any("batch is static in the source (batch 2)" in n for n in result.report.to_dict()["notes"])


# 4./5. scikit-learn options per estimator, opsets per domain ------------------------
def _sk(name):
    from sklearn.cluster import KMeans
    from sklearn.datasets import load_iris
    from sklearn.ensemble import IsolationForest, VotingClassifier
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.multioutput import MultiOutputRegressor
    from sklearn.naive_bayes import GaussianNB
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    X, y = load_iris(return_X_y=True)
    return {
        "linearsvc-pipeline": lambda: make_pipeline(StandardScaler(), LinearSVC()).fit(X, y == 1),
        "soft-voting": lambda: VotingClassifier(
            [("lr", LogisticRegression(max_iter=500)), ("nb", GaussianNB())], voting="soft"
        ).fit(X, y),
        "hard-voting": lambda: VotingClassifier(
            [("lr", LogisticRegression(max_iter=500)), ("nb", GaussianNB())], voting="hard"
        ).fit(X, y),
        "kmeans-pipeline": lambda: make_pipeline(StandardScaler(), KMeans(3, n_init=2, random_state=0)).fit(X),
        "isolation-forest": lambda: IsolationForest(n_estimators=10, random_state=0).fit(X),
        "multi-output": lambda: MultiOutputRegressor(Ridge()).fit(X, np.stack([y, y * 2.0], 1)),
    }[name](), X[::10].astype(np.float32)


@pytest.mark.parametrize(
    "name", ["linearsvc-pipeline", "soft-voting", "hard-voting", "kmeans-pipeline", "isolation-forest", "multi-output"]
)
def test_sklearn_estimators_that_needed_their_own_options(tmp_path, name):
    model, X = _sk(name)
    np.save(tmp_path / "x.npy", X)
    result = api.convert(model, sample=tmp_path / "x.npy")
    assert result.passed, result.report.to_dict()["failures"]
    if name == "isolation-forest":  # label and scores; ai.onnx.ml at a version skl2onnx supports
        assert len(result.model.graph.output) == 2
        assert {i.domain: i.version for i in result.model.opset_import}["ai.onnx.ml"] <= 3


def test_text_pipeline_takes_strings_and_a_locale_that_exists(tmp_path):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    docs = np.array(["the cat sat", "onnx runs fast", "a cat and a dog", "convert the model"] * 3)
    model = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(docs, [0, 1, 0, 1] * 3)
    np.savez(tmp_path / "docs.npz", X=docs[:4])
    result = api.convert(model, sample=tmp_path / "docs.npz")
    assert result.passed, result.report.to_dict()["failures"]
    assert result.model.graph.input[0].type.tensor_type.elem_type == 8  # STRING
    locales = [
        a.s.decode()
        for n in result.model.graph.node
        if n.op_type == "StringNormalizer"
        for a in n.attribute
        if a.name == "locale"
    ]
    import locale as locale_mod

    for loc in locales:  # a locale this machine has (en_US.UTF-8 is missing on many)
        saved = locale_mod.setlocale(locale_mod.LC_CTYPE)
        try:
            locale_mod.setlocale(locale_mod.LC_CTYPE, loc)
        finally:
            locale_mod.setlocale(locale_mod.LC_CTYPE, saved)
    chosen = api.convert(model, sample=tmp_path / "docs.npz", options={"locale": "C.UTF-8"})
    assert chosen.passed
    assert {
        a.s.decode()
        for n in chosen.model.graph.node
        if n.op_type == "StringNormalizer"
        for a in n.attribute
        if a.name == "locale"
    } <= {"C.UTF-8"}


# 6. .skops trust -------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["imputer", "knn", "mlp", "voting", "histgb"])
def test_stock_sklearn_skops_files_load_without_trust(tmp_path, kind):
    skops = pytest.importorskip("skops.io")
    from sklearn.datasets import load_iris
    from sklearn.ensemble import HistGradientBoostingRegressor, VotingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline

    from onnxgate.converters.sklearn import load

    X, y = load_iris(return_X_y=True)
    model = {
        "imputer": lambda: make_pipeline(SimpleImputer(), LogisticRegression(max_iter=300)),
        "knn": lambda: KNeighborsClassifier(3),
        "mlp": lambda: MLPClassifier(hidden_layer_sizes=(4,), max_iter=20),
        "voting": lambda: VotingClassifier([("a", LogisticRegression(max_iter=300))]),
        "histgb": lambda: HistGradientBoostingRegressor(max_iter=3),
    }[kind]().fit(X, y)
    skops.dump(model, tmp_path / "m.skops")
    loaded = load(tmp_path / "m.skops", False)
    assert type(loaded) is type(model)


def test_skops_holding_a_function_stays_refused(tmp_path):
    skops = pytest.importorskip("skops.io")
    from sklearn.preprocessing import FunctionTransformer

    skops.dump(FunctionTransformer(func=os.system), tmp_path / "evil.skops")
    from onnxgate.converters.sklearn import load
    from onnxgate.plugins.spec import ConvertOptions

    with pytest.raises(UntrustedSourceError) as err:
        load(tmp_path / "evil.skops", False)
    assert "system" in str(err.value) and "--trust-type" in str(err.value)
    # trusting some other type does not trust the function
    with pytest.raises(UntrustedSourceError):
        load(tmp_path / "evil.skops", False, ConvertOptions(extra={"trust_types": ["numpy.dtype"]}))
    proc = run_cli("convert", str(tmp_path / "evil.skops"), "-o", str(tmp_path / "e.onnx"))
    assert_clean_error(proc, 2)
    assert "--trust-type TYPE" in proc.stderr and not (tmp_path / "e.onnx").exists()


def test_trust_type_admits_exactly_the_named_type(tmp_path):
    skops = pytest.importorskip("skops.io")
    import operator

    from sklearn.preprocessing import FunctionTransformer

    skops.dump(FunctionTransformer(func=operator.neg), tmp_path / "neg.skops")
    from onnxgate.converters.sklearn import load
    from onnxgate.plugins.spec import ConvertOptions

    untrusted = skops.get_untrusted_types(file=tmp_path / "neg.skops")
    assert untrusted
    with pytest.raises(UntrustedSourceError):
        load(tmp_path / "neg.skops", False)  # a function, from another module: never trusted by default
    loaded = load(tmp_path / "neg.skops", False, ConvertOptions(extra={"trust_types": untrusted}))
    assert loaded.func is operator.neg


# 7. XGBoost with DataFrame feature names -------------------------------------------------
def test_xgboost_booster_trained_on_a_dataframe(tmp_path):
    xgboost = pytest.importorskip("xgboost")
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    X = data.data.iloc[:, :6].rename(columns=lambda c: c.replace(" ", "_"))
    xgboost.XGBClassifier(n_estimators=5, max_depth=2).fit(X, data.target).save_model(tmp_path / "m.json")
    np.save(tmp_path / "x.npy", X.to_numpy(np.float32)[::40])
    result = api.convert(tmp_path / "m.json", sample=tmp_path / "x.npy")
    assert result.passed, result.report.to_dict()["failures"]


# 8. extra ONNX inputs ----------------------------------------------------------------------
def test_keras_normalization_layer_is_folded_into_constants(tmp_path):
    keras = pytest.importorskip("keras")
    norm = keras.layers.Normalization(mean=[1.0, 2.0, 3.0], variance=[4.0, 5.0, 6.0])
    inp = keras.Input((3,), name="x")
    model = keras.Model(inp, keras.layers.Dense(2)(norm(inp)))
    result = api.convert(model)
    assert result.passed, result.report.to_dict()["failures"]
    assert [i.name for i in result.model.graph.input] == ["x"]


def test_converter_made_inputs_are_a_conversion_failure_naming_them():
    from onnxgate.pipeline.conversion.matching import to_onnx_names

    with pytest.raises(ConversionError) as err:
        to_onnx_names(["x"], ["x", "norm/mean:0"], ["x"], converted=True)
    assert "norm/mean:0" in str(err.value)
    with pytest.raises(UsageError):  # a user's own file with more inputs: their input
        to_onnx_names(["x"], ["x", "y"], ["x"], converted=False)


# 9. ready-made ONNX without golden data ------------------------------------------------------
def _light(name):
    from pathlib import Path

    import onnx

    return Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / f"light_{name}.onnx"


def test_ready_made_model_is_checked_against_onnx_reference(tmp_path):
    import shutil

    shutil.copy(_light("squeezenet"), tmp_path / "squeezenet.onnx")  # opset 9 Softmax: see reference.corrected_ops
    result = api.validate(tmp_path / "squeezenet.onnx", latency=False)
    assert result.passed and result.report.to_dict()["verdict"] == "passed", result.report.to_dict()["failures"]
    assert any("onnx.reference.ReferenceEvaluator" in n for n in result.report.to_dict()["notes"])


def test_reference_budget_and_missing_operators_leave_it_unverified(tmp_path):
    import shutil

    shutil.copy(_light("densenet121"), tmp_path / "d.onnx")
    slow = api.validate(tmp_path / "d.onnx", reference_timeout=0.01, latency=False)
    assert not slow.passed and any("--reference-timeout" in f for f in slow.report.to_dict()["failures"])
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    (tmp_path / "z.onnx").write_bytes(
        to_onnx(LogisticRegression(max_iter=300).fit(X, y), X[:1].astype(np.float32)).SerializeToString()
    )  # ZipMap on
    zipmap = api.validate(tmp_path / "z.onnx", latency=False)
    assert not zipmap.passed and any("ZipMap" in f for f in zipmap.report.to_dict()["failures"])
    accepted = api.validate(tmp_path / "z.onnx", latency=False, accept_unverified=True)
    assert accepted.passed and accepted.report.to_dict()["verdict"] == "unverified"


# 11. NaN in tree models ------------------------------------------------------------------------
def test_nan_edge_failure_on_trees_is_explained(tmp_path):
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    from onnxgate.pipeline.gate.config import GateConfig

    X, y = load_iris(return_X_y=True)
    X = X.copy()
    X[::3, 2] = np.nan  # trained with missing values: the tree learns where NaN goes
    model = DecisionTreeClassifier(max_depth=4, random_state=0).fit(X, y)
    np.save(tmp_path / "x.npy", np.nan_to_num(X[::10], nan=1.0).astype(np.float32))
    result = api.convert(model, sample=tmp_path / "x.npy", gate=GateConfig(edge_values=True), latency=False)
    edge = next(c for c in result.report.to_dict()["checks"] if c["name"] == "edge_values")
    if edge["passed"]:
        pytest.skip("the ONNX tree happened to route NaN like scikit-learn on these rows")
    assert "missing value (NaN)" in edge["message"] and "SimpleImputer" in edge["message"]


# 12. noise ---------------------------------------------------------------------------------------
def test_tensorflow_and_numpy_noise_stays_off_the_terminal(tmp_path):
    keras = pytest.importorskip("keras")
    inp = keras.Input((4,), name="x")
    keras.Model(inp, keras.layers.Dense(2)(inp)).save(tmp_path / "m.keras")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "0"  # the noisiest setting a user may have
    proc = run_cli(
        "convert", str(tmp_path / "m.keras"), "-o", str(tmp_path / "m.onnx"), "--edge-values", "--no-latency", env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr
    assert proc.stdout.startswith("PASSED") and len(proc.stdout.strip().splitlines()) == 1, proc.stdout
