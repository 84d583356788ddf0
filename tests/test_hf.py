"""Hugging Face transformers models on every path (issue 14, items 1-4; the
zoo's transformers family, fixtures/zoo/deep_hf.py, covers item 5).

Tiny models from configs with random weights (fixtures/zoo/hf_models.py),
a tokenizer trained from code, never the hub (HF_HUB_OFFLINE=1).
Cost on the project machine (2 cores, quiet): about 60 s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "fixtures"))
os.environ["HF_HUB_OFFLINE"] = "1"

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from zoo import hf_models

from onnxgate.pipeline import convert, validate
from onnxgate.pipeline.cli.app import main
from onnxgate.plugins import UntrustedSourceError, UsageError


def _cli(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    return code, err


def _dims(onnx_path: Path) -> dict[str, list]:
    import onnx

    model = onnx.load(str(onnx_path))
    return {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}


# 1. optional forward() arguments ------------------------------------------------


class WithOptionals(torch.nn.Module):
    """forward() as transformers writes it: one required input, optional ones after."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(4, 3)

    def forward(self, x, bias=None, mask=None, labels=None, *, scale: float = 1.0):
        out = self.lin(x) * scale
        if bias is not None:
            out = out + bias
        if mask is not None:
            out = out * mask
        return out


def test_optional_forward_arguments_stay_at_their_defaults():
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    alone = convert(WithOptionals(), sample={"x": x}, latency=False)
    assert alone.passed, alone.failures
    assert [i.name for i in alone.session().get_inputs()] == ["x"]
    # a later optional argument without the one before it: passed by keyword
    mask = np.ones((3, 3), np.float32)
    mask[0] = 0
    keyword = convert(WithOptionals(), sample={"x": x, "mask": mask}, latency=False)
    assert keyword.passed, keyword.failures
    assert [i.name for i in keyword.session().get_inputs()] == ["x", "mask"]
    with pytest.raises(UsageError, match=r"do not match the model's forward\(\) arguments"):
        convert(WithOptionals(), sample={"mask": mask}, latency=False)  # x is required


def test_a_transformers_module_converts_and_validates_by_keyword(tmp_path):
    model, example = hf_models.made("distilbert")
    onnx_path = tmp_path / "distilbert.onnx"
    result = convert(model, onnx_path, sample=example, latency=False)
    assert result.passed, result.failures
    assert _dims(onnx_path) == {"input_ids": ["batch", "sequence"], "attention_mask": ["batch", "sequence"]}
    again = validate(model, onnx_path, sample=example, latency=False)
    assert again.passed, again.failures
    # the sequence axis is exercised by the sweep, on the original too
    swept = {c.name for c in result.report.cases}
    assert {"sweep_sequence=1", "sweep_sequence=16"} <= swept, swept


# 3. ModelOutput fields as named outputs -----------------------------------------


def test_model_output_fields_are_the_onnx_output_names():
    from onnxgate.converters import torch as torch_converter

    model, example = hf_models.made("bert")
    original = torch_converter.run(model, example)
    assert list(original) == ["last_hidden_state", "pooler_output"]  # None fields are no outputs
    result = convert(model, sample=example, latency=False)
    assert result.passed, result.failures
    assert [o.name for o in result.session().get_outputs()] == ["last_hidden_state", "pooler_output"]
    shapes = {o.name: o.shape for o in result.report.cases[0].outputs}
    assert shapes == {"last_hidden_state": [2, 7, 32], "pooler_output": [2, 32]}
    # matched by name, not position: the same model with its outputs listed the other way round
    import onnx

    swapped = onnx.ModelProto()
    swapped.CopyFrom(result.model)
    outputs = list(swapped.graph.output)
    del swapped.graph.output[:]
    swapped.graph.output.extend(reversed(outputs))
    again = validate(model, swapped, sample=example, latency=False, sweep=False)
    assert again.passed, again.failures
    assert {o.name: o.shape for o in again.report.cases[0].outputs} == shapes


def test_a_causal_lm_is_exported_without_its_cache_and_says_so():
    model, example = hf_models.made("gpt2")
    result = convert(model, sample=example, latency=False)
    assert result.passed, result.failures
    assert [o.name for o in result.session().get_outputs()] == ["logits"]  # no past key values
    assert any("use_cache=False" in n for n in result.report.notes), result.report.notes


# 2. .pt2 programs ----------------------------------------------------------------


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
    """DistilBERT exported with args= and with kwargs=, batch and sequence dynamic."""
    out = tmp_path_factory.mktemp("pt2")
    model, example = hf_models.made("distilbert")
    tensors = {k: torch.from_numpy(v) for k, v in example.items()}
    dims = {k: {0: torch.export.Dim("batch"), 1: torch.export.Dim("sequence", max=64)} for k in tensors}
    paths = {"args": out / "args.pt2", "kwargs": out / "kwargs.pt2"}
    torch.export.save(
        torch.export.export(model, tuple(tensors.values()), dynamic_shapes=tuple(dims.values())), str(paths["args"])
    )
    torch.export.save(torch.export.export(model, (), kwargs=tensors, dynamic_shapes=dims), str(paths["kwargs"]))
    return paths


def test_a_kwargs_program_loads_in_a_fresh_interpreter_and_is_called_by_keyword(programs, tmp_path):
    """onnxgate imports transformers.modeling_outputs itself: the program names it."""
    onnx_path = tmp_path / "kw.onnx"
    report = tmp_path / "kw.json"
    proc = subprocess.run(
        [sys.executable, "-m", "onnxgate.pipeline.cli", "convert", str(programs["kwargs"]), "-o", str(onnx_path)]
        + ["--report", str(report), "--no-latency"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    dims = _dims(onnx_path)  # symbolic names are the program's own (s0, s1)
    assert list(dims) == ["input_ids", "attention_mask"]
    assert all(isinstance(d, str) for axes in dims.values() for d in axes), dims
    doc = json.loads(report.read_text())
    assert [o["name"] for o in doc["cases"][0]["outputs"]] == ["logits"]
    assert any(c["name"].startswith("sweep_") and c.get("axis") != "batch" for c in doc["cases"])


def test_an_args_program_converts_with_dynamic_batch_and_sequence(programs, tmp_path, capsys):
    onnx_path = tmp_path / "args.onnx"
    code, err = _cli(["convert", str(programs["args"]), "-o", str(onnx_path), "--no-latency"], capsys)
    assert code == 0, err
    dims = _dims(onnx_path)
    assert list(dims) == ["input_ids", "attention_mask"]
    assert all(isinstance(d[0], str) and isinstance(d[1], str) for d in dims.values()), dims


def _renamed_type(src: Path, dst: Path, new_module: str) -> None:
    """The program with its output type moved to another module, as if the
    library that defines it were not installed."""
    old = "transformers.modeling_outputs"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith("models/model.json"):
                data = data.replace(old.encode(), new_module.encode())
            zout.writestr(info, data)


def test_a_program_whose_output_type_is_unknown_fails_naming_type_and_module(programs, tmp_path, capsys):
    odd = tmp_path / "odd.pt2"
    _renamed_type(programs["kwargs"], odd, "acme_models.outputs")
    code, err = _cli(["convert", str(odd), "-o", str(tmp_path / "odd.onnx")], capsys)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "acme_models.outputs.SequenceClassifierOutput" in err and "--trust-source" in err
    with pytest.raises(UsageError, match=r"install acme_models \(module acme_models.outputs\)"):
        convert(odd, trust_source=True)
    assert not (tmp_path / "odd.onnx").exists()


def test_a_program_from_a_known_library_that_is_missing_says_what_to_install(programs, tmp_path):
    import importlib.util

    if importlib.util.find_spec("diffusers") is not None:
        pytest.skip("diffusers is installed here")
    odd = tmp_path / "diffusers.pt2"
    _renamed_type(programs["kwargs"], odd, "diffusers.models.outputs")
    with pytest.raises(UsageError, match=r"install diffusers \(module diffusers.models.outputs\) to load it"):
        convert(odd)


# 4. save_pretrained folders --------------------------------------------------------


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    out = tmp_path_factory.mktemp("hf")
    for name in ("distilbert", "gpt2"):
        hf_models.save_folder(name, out / name)
    return out


def test_a_folder_is_detected_without_importing_torch_or_transformers(folders):
    code = (
        "import sys; from pathlib import Path; from onnxgate.plugins import detect; "
        "from onnxgate.plugins.manager import Registry; "
        f"spec = detect.for_path(Path({str(folders / 'gpt2')!r}), Registry().converters()); "
        "print(spec.name, 'torch' in sys.modules, 'transformers' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ["transformers", "False", "False"], proc.stderr[-1000:]


def test_a_causal_lm_folder_converts_with_synthesised_ids_and_dynamic_axes(folders, tmp_path, capsys):
    onnx_path, report = tmp_path / "gpt2.onnx", tmp_path / "gpt2.json"
    code, err = _cli(
        ["convert", str(folders / "gpt2"), "-o", str(onnx_path), "--report", str(report), "--no-latency"], capsys
    )
    assert code == 0, err
    assert list(_dims(onnx_path)) == ["input_ids", "attention_mask"]
    assert all(isinstance(d, str) for dims in _dims(onnx_path).values() for d in dims)
    doc = json.loads(report.read_text())
    assert doc["converter"]["name"] == "transformers"
    assert any("use_cache=False" in n for n in doc["notes"]), doc["notes"]
    assert [o["name"] for o in doc["cases"][0]["outputs"]] == ["logits"]


def test_text_builds_the_sample_with_the_folders_tokenizer(folders, tmp_path, capsys):
    report = tmp_path / "text.json"
    argv = ["validate", str(folders / "distilbert"), "--report", str(report), "--no-latency", "--no-sweep"]
    code, err = _cli(argv + ["--text", "the cat sat on the mat", "--text", "a dog ran"], capsys)
    assert code == 0, err
    shapes = json.loads(report.read_text())["cases"][0]["input_shapes"]
    assert shapes == {"input_ids": [2, 6], "attention_mask": [2, 6]}  # padded to the longer text
    one = validate(folders / "distilbert", text="the gate compares", latency=False, sweep=False)
    assert one.passed and one.report.cases[0].input_shapes == {"input_ids": [1, 3], "attention_mask": [1, 3]}


def test_a_folder_validates_with_a_sample_that_leaves_optional_inputs_out(folders, tmp_path):
    ids = np.random.default_rng(1).integers(0, hf_models.VOCAB, (3, 5)).astype(np.int64)
    np.savez(tmp_path / "ids.npz", input_ids=ids)
    result = validate(folders / "distilbert", sample=tmp_path / "ids.npz", latency=False, sweep=False)
    assert result.passed, result.failures
    assert result.report.cases[0].input_shapes == {"input_ids": [3, 5]}


def _folder(tmp_path, name, config=None, files=()):
    path = tmp_path / name
    path.mkdir()
    if config is not None:
        (path / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    for file in files:
        (path / file).write_bytes(b"\0" * 8)
    return path


@pytest.mark.parametrize(
    "name, config, files, message",
    [
        ("bad-json", '{"model_type": "bert",', ["model.safetensors"], r"config.json: not valid JSON"),
        (
            "unknown-arch",
            {"model_type": "bert", "architectures": ["FluxCapacitorModel"]},
            ["model.safetensors"],
            r"unknown architecture 'FluxCapacitorModel'",
        ),
        (
            "not-a-model",
            {"model_type": "bert", "architectures": ["BertConfig"]},
            ["model.safetensors"],
            r"unknown architecture 'BertConfig'",
        ),
        ("no-weights", {"model_type": "bert", "architectures": ["BertModel"]}, [], r"no weights"),
        (
            "pickle-only",
            {"model_type": "bert", "architectures": ["BertModel"]},
            ["pytorch_model.bin"],
            r"pytorch_model.bin, a pickle .*--trust-source",
        ),
    ],
)
def test_hostile_folders_end_in_one_line_with_exit_2(tmp_path, capsys, name, config, files, message):
    folder = _folder(tmp_path, name, config, files)
    out = tmp_path / f"{name}.onnx"
    code, err = _cli(["convert", str(folder), "-o", str(out)], capsys)
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("onnxgate: error:")
    import re

    assert re.search(message, err), err
    assert not out.exists()


def test_pickled_weights_load_with_trust_source(folders, tmp_path):
    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text((folders / "distilbert" / "config.json").read_text())
    torch.save(load_file(str(folders / "distilbert" / "model.safetensors")), str(folder / "pytorch_model.bin"))
    with pytest.raises(UntrustedSourceError):
        validate(folder, latency=False)
    result = validate(folder, trust_source=True, latency=False, sweep=False)
    assert result.passed, result.failures


def test_text_needs_a_tokenizer_and_a_text_model(folders, tmp_path, capsys):
    bare = tmp_path / "bare"
    bare.mkdir()
    for file in ("config.json", "model.safetensors"):
        (bare / file).write_bytes((folders / "gpt2" / file).read_bytes())
    code, err = _cli(["validate", str(bare), "--text", "hello"], capsys)
    assert code == 2 and "needs a tokenizer" in err, err
    x = np.ones((2, 4), np.float32)
    with pytest.raises(UsageError, match="does not build samples from text"):
        validate(WithOptionals(), text="hello")
    with pytest.raises(UsageError, match="drop --sample"):
        validate(folders / "gpt2", text="hello", sample={"input_ids": x.astype(np.int64)})
