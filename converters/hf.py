"""Hugging Face model folders (what ``save_pretrained`` writes) -> ONNX.

The folder is recognised by its ``config.json`` (``model_type`` or
``architectures``) without importing transformers or torch. It loads with
the class the config names (``architectures[0]``, else ``AutoModel``) from
local files only, never the hub, and converts through the torch converter
with dynamic batch and sequence axes. Without a sample, validation inputs
come from the config: token ids in ``[0, vocab_size)`` with an all-ones
attention mask, ``pixel_values`` of the configured image size, Whisper's
``input_features``. ``--text`` builds the sample with the folder's tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path

from onnxgate.plugins import (
    ConverterSpec,
    InputSpec,
    Tolerance,
    UntrustedSourceError,
    UsageError,
    hookimpl,
)

from . import torch as torch_converter

CONFIG = "config.json"
SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
PICKLED_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json")
#: Bytes of config.json read (configs are a few KB).
MAX_CONFIG = 4 * 1024 * 1024


def sniff(path: Path) -> bool:
    """A folder with a config.json that looks like a transformers config
    (an unreadable one counts: loading then says what is wrong with it)."""
    config = path / CONFIG
    if not path.is_dir() or not config.is_file() or (path / "saved_model.pb").is_file():
        return False
    try:
        data = json.loads(config.read_bytes()[:MAX_CONFIG])
    except (ValueError, UnicodeDecodeError):
        return True
    return isinstance(data, dict) and ("model_type" in data or "architectures" in data)


def read_config(path: Path) -> dict:
    config = path / CONFIG
    raw = config.read_bytes()
    if len(raw) > MAX_CONFIG:
        raise UsageError(f"{config}: larger than {MAX_CONFIG} bytes; not a model config")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{config}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{config}: not a JSON object")
    return data


def _weights(path: Path, trusted: bool) -> bool:
    """True for safetensors weights; pickled weights only when trusted."""
    if any((path / name).is_file() for name in SAFE_WEIGHTS):
        return True
    if any((path / name).is_file() for name in PICKLED_WEIGHTS):
        if not trusted:
            raise UntrustedSourceError(
                f"{path}: the weights are pytorch_model.bin, a pickle (loading it can run code); "
                "pass --trust-source only if you trust where it came from, or save with safetensors"
            )
        return False
    raise UsageError(f"{path}: no weights (model.safetensors or pytorch_model.bin) next to {CONFIG}")


def model_class(config: dict, path: Path):
    import transformers

    architectures = config.get("architectures") or []
    if not isinstance(architectures, list) or not all(isinstance(a, str) for a in architectures):
        raise UsageError(f"{path / CONFIG}: 'architectures' must be a list of class names")
    if not architectures:
        return transformers.AutoModel
    name = architectures[0]
    cls = getattr(transformers, name, None) if name.isidentifier() else None
    if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
        raise UsageError(
            f"{path / CONFIG}: unknown architecture {name!r} (transformers {transformers.__version__} "
            "has no such model class; custom code is not loaded)"
        )
    return cls


def quiet(transformers) -> None:
    """No progress bars or advice on the terminal: the report carries what matters."""
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def load(path: Path, trusted: bool):
    import transformers

    config = read_config(path)
    safe = _weights(path, trusted)
    cls = model_class(config, path)
    quiet(transformers)
    try:
        model = cls.from_pretrained(
            str(path), local_files_only=True, use_safetensors=safe, trust_remote_code=False, weights_only=not trusted
        )
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise UsageError(f"{path}: cannot load with {cls.__name__}: {type(exc).__name__}: {exc}") from None
    model.config.use_cache = False  # the key/value cache is not exported
    return model.eval()


def signature(model, options=None) -> list[InputSpec] | None:
    """Validation inputs from the config, by the model's main input."""
    config = model.config
    name = getattr(model, "main_input_name", "input_ids")
    names, _ = torch_converter.calls.parameters(model)
    if name == "pixel_values":
        size = _pair(getattr(config, "image_size", 224))
        return [InputSpec(name, (None, int(getattr(config, "num_channels", 3)), *size), "float32")]
    if name == "input_features":
        frames = 2 * int(getattr(config, "max_source_positions", 1500))
        return [InputSpec(name, (None, int(getattr(config, "num_mel_bins", 80)), frames), "float32")]
    vocab = int(getattr(config, "vocab_size", 0) or 0)
    if name != "input_ids" or vocab <= 0:
        return None  # ask for --sample
    specs = [InputSpec("input_ids", (None, None), "int64", 0, vocab)]
    if "attention_mask" in names:
        specs.append(InputSpec("attention_mask", (None, None), "int64", 1, 2, optional=True))
    type_vocab = int(getattr(config, "type_vocab_size", 0) or 0)
    if "token_type_ids" in names and type_vocab > 0:  # BERT-style segment ids
        specs.append(InputSpec("token_type_ids", (None, None), "int64", 0, type_vocab, optional=True))
    return specs


def _pair(value) -> tuple[int, int]:
    if isinstance(value, (list, tuple)):
        return int(value[0]), int(value[1])
    return int(value), int(value)


def text_sample(model, texts):
    """The folder's tokenizer applied to ``texts`` (padded to one length)."""
    import numpy as np

    folder = Path(getattr(model, "name_or_path", "") or ".")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise UsageError(f"{folder}: --text needs a tokenizer in the model folder (tokenizer.json); none found")
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{folder}: cannot load its tokenizer: {type(exc).__name__}: {exc}") from None
    if tokenizer.pad_token is None and len(texts) > 1:
        if tokenizer.eos_token is None:
            raise UsageError(f"{folder}: the tokenizer has no padding token; give one --text at a time")
        tokenizer.pad_token = tokenizer.eos_token
    encoded = tokenizer(list(texts), padding=True, return_tensors="np")
    names = [spec.name for spec in signature(model) or ()]  # the inputs the model takes
    sample = {k: np.asarray(v, dtype=np.int64) for k, v in encoded.items() if k in names}
    vocab = int(getattr(model.config, "vocab_size", 0) or 0)
    ids = sample.get("input_ids")
    if ids is None or ids.size == 0:
        raise UsageError(f"{folder}: the tokenizer gave no token ids for {list(texts)!r}")
    if vocab and int(ids.max()) >= vocab:
        raise UsageError(f"{folder}: the tokenizer gives id {int(ids.max())}, beyond the model's vocabulary ({vocab})")
    return sample


@hookimpl
def onnxgate_converters():
    yield ConverterSpec(
        name="transformers",
        framework="Hugging Face transformers",
        description="save_pretrained folders (config.json + safetensors) via the torch converter",
        convert=torch_converter.convert,
        run=torch_converter.run,
        run_float64=torch_converter.run_float64,
        load=load,
        inputs=signature,
        suffixes=("/",),
        sniff=sniff,
        tolerance=Tolerance(rtol=1e-4, atol=1e-5),
        requires=("torch", "onnxscript", "transformers", "safetensors"),
        framework_distribution="transformers",
        intermediates=torch_converter.intermediates,
        text_sample=text_sample,
    )
