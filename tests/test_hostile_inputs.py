"""Hostile and unlucky input (issue 12, items 12-14, 16): a gate config that
would loosen the gate by coercion, CSV samples a spreadsheet writes, a sample
too large for memory, `validate SOURCE` without MODEL."""

from __future__ import annotations

import json

import numpy as np
import pytest

from onnxgate.pipeline.cli import main
from onnxgate.pipeline.conversion import inputs
from onnxgate.pipeline.gate import config
from onnxgate.plugins.errors import UsageError

ROWS = [[5.1, 3.5, 1.4, 0.2], [4.9, 3.0, 1.4, 0.2], [6.2, 3.4, 5.4, 2.3]]


@pytest.fixture(scope="module")
def iris():
    pytest.importorskip("skops")
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    return LogisticRegression(max_iter=500).fit(X, y)


@pytest.fixture
def skops_source(tmp_path, iris):
    import skops.io as sio

    path = tmp_path / "iris.skops"
    sio.dump(iris, path)
    return path


# ---- item 12: --gate-config ------------------------------------------------------------------
@pytest.mark.parametrize(
    "body,needle",
    [
        ("[outputs.probabilities]\natol = true\n", "atol"),  # bool is not a float
        ("[outputs.probabilities]\nrtol = -1e-3\n", "rtol"),  # negative tolerance
        ("[outputs.probabilities]\natol = nan\n", "atol"),  # not finite
        ("[outputs.label]\nmin_agreement = 1.5\n", "min_agreement"),  # a share above 1
        ("[outputs.label]\ntopk = 0\n", "topk"),  # top-0
        ("[outputs.label]\ntopk = 2.5\n", "topk"),  # not an integer
        ("[outputs.label]\nelementwise = 1\n", "elementwise"),  # int is not a bool
        ("[outputs.label]\natoll = 1e-3\n", "atoll"),  # unknown key
        ("tolerance = 1\n[outputs.label]\natol = 1e-3\n", "tolerance"),  # unknown top-level key
    ],
)
def test_gate_config_rejects_coercion_ranges_and_unknown_keys(tmp_path, body, needle):
    path = tmp_path / "gate.toml"
    path.write_text(body)
    with pytest.raises(UsageError) as info:
        config.load_file(path)
    message = str(info.value)
    assert str(path) in message and needle in message and "\n" not in message


def test_gate_config_json_bool_is_not_a_float(tmp_path):
    path = tmp_path / "gate.json"
    path.write_text(json.dumps({"outputs": {"probabilities": {"atol": True}}}))
    with pytest.raises(UsageError, match="atol"):
        config.load_file(path)


def test_gate_config_valid_values_still_load(tmp_path):
    path = tmp_path / "gate.toml"
    path.write_text(
        "[outputs.probabilities]\natol = 1\nrtol = 0.001\n[outputs.label]\nmin_agreement = 0.99\n"
        "topk = 3\nelementwise = false\n"
    )
    rules = config.load_file(path)
    assert rules["probabilities"].atol == 1.0 and rules["label"].topk == 3 and rules["label"].elementwise is False


def test_gate_config_output_name_matching_no_output_is_exit_2(tmp_path, skops_source, capsys):
    path = tmp_path / "gate.toml"
    path.write_text("[outputs.probabilites]\natol = 1e-3\n")  # typo: matches nothing
    out = tmp_path / "m.onnx"
    code = main(["convert", str(skops_source), "-o", str(out), "--gate-config", str(path), "--no-latency"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "probabilites" in err and str(path) in err and "probabilities" in err  # names the real outputs
    assert not out.exists()


def test_cli_tolerance_rule_range_is_checked():
    with pytest.raises(UsageError, match="atol"):
        config.parse_rule("probabilities:atol=-1")


# ---- item 13: CSV samples --------------------------------------------------------------------
def _csv(tmp_path, text, name="x.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_csv_with_utf8_bom_keeps_its_first_row(tmp_path):
    path = _csv(tmp_path, "\ufeff" + "\n".join(",".join(map(str, r)) for r in ROWS) + "\n")
    got = inputs.load_sample(path)[None]
    np.testing.assert_allclose(got, np.asarray(ROWS, np.float32))


def test_csv_with_bom_and_header(tmp_path):
    path = _csv(tmp_path, "\ufeffa,b,c,d\r\n" + "\r\n".join(",".join(map(str, r)) for r in ROWS) + "\r\n")
    table = inputs.load_sample(path)  # named columns: bound to the model's inputs later
    assert table.names == ["a", "b", "c", "d"]
    assert table.bind(None)[None].shape == (3, 4)


def test_csv_quoted_numbers_are_numbers(tmp_path):
    path = _csv(tmp_path, '"a","b","c","d"\n' + "\n".join(",".join(f'"{v}"' for v in r) for r in ROWS) + "\n")
    np.testing.assert_allclose(inputs.load_sample(path).bind(None)[None], np.asarray(ROWS, np.float32))


def test_csv_column_count_mismatch_is_exit_2_naming_the_line(tmp_path, skops_source, capsys):
    path = _csv(tmp_path, "1,2,3,4\n5,6,7\n8,9,10,11\n")
    with pytest.raises(UsageError, match=r"line 2.*3 columns.*4"):
        inputs.load_sample(path)
    code = main(["convert", str(skops_source), "-o", str(tmp_path / "m.onnx"), "--sample", str(path)])
    assert code == 2 and "line 2" in capsys.readouterr().err


def test_csv_text_in_a_data_row_is_a_usage_error(tmp_path):
    path = _csv(tmp_path, "1,2,3,4\n5,x,7,8\n")
    with pytest.raises(UsageError, match="line 2"):
        inputs.load_sample(path)


# ---- item 14: --max-sample-bytes -------------------------------------------------------------
def test_sample_over_the_limit_is_refused_naming_the_limit(tmp_path, monkeypatch):
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((1000, 4), np.float32))
    with pytest.raises(UsageError, match=r"--max-sample-bytes 1000"):
        inputs.load_sample(path, max_bytes=1000)
    monkeypatch.setenv(inputs.MAX_SAMPLE_BYTES_ENV, "2000")
    with pytest.raises(UsageError, match=r"--max-sample-bytes 2000"):
        inputs.load_sample(path)
    assert inputs.DEFAULT_MAX_SAMPLE_BYTES >= 64 * 1024 * 1024


def test_npz_that_expands_beyond_the_limit_is_refused(tmp_path):
    path = tmp_path / "x.npz"
    np.savez_compressed(path, X=np.zeros((4000, 100), np.float32))  # ~1.6 MB inside, a few KB on disk
    assert path.stat().st_size < 100_000
    with pytest.raises(UsageError, match="max-sample-bytes"):
        inputs.load_sample(path, max_bytes=1_000_000)


def test_cli_max_sample_bytes_is_exit_2_before_any_work(tmp_path, skops_source, capsys, monkeypatch):
    # the CLI sets it for this process: setenv first so monkeypatch restores its absence afterwards
    monkeypatch.setenv(inputs.MAX_SAMPLE_BYTES_ENV, str(inputs.DEFAULT_MAX_SAMPLE_BYTES))
    monkeypatch.delenv(inputs.MAX_SAMPLE_BYTES_ENV)
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((1000, 4), np.float32))
    out = tmp_path / "m.onnx"
    code = main(["convert", str(skops_source), "-o", str(out), "--sample", str(path), "--max-sample-bytes", "1000"])
    err = capsys.readouterr().err
    assert code == 2 and "--max-sample-bytes 1000" in err and not out.exists()
    assert main(["convert", str(skops_source), "-o", str(out), "--max-sample-bytes", "-5"]) == 2


def test_cli_limit_does_not_outlive_the_test():
    import os

    assert inputs.MAX_SAMPLE_BYTES_ENV not in os.environ


# ---- item 16: validate SOURCE without MODEL --------------------------------------------------
def test_validate_source_without_model_does_not_read_the_source_as_onnx(skops_source, capsys):
    from onnxgate.pipeline.deployment import record

    code = main(["validate", str(skops_source), "--no-latency"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "INVALID_PROTOBUF" not in captured.err
    # no ONNX file holds what was validated (it was converted in memory): no record to bind
    assert not record.path_for(skops_source).exists()


def test_validate_ready_made_onnx_without_model_writes_its_record(tmp_path, skops_source, capsys):
    from onnxgate.pipeline.deployment import record

    onnx_path = tmp_path / "m.onnx"
    assert main(["convert", str(skops_source), "-o", str(onnx_path), "--no-latency"]) == 0
    record.path_for(onnx_path).unlink()
    code = main(["validate", str(onnx_path), "--accept-unverified", "--no-latency"])
    assert code == 0, capsys.readouterr().err
    assert record.load(onnx_path)["model"]["sha256"] == record.sha256_path(onnx_path)
