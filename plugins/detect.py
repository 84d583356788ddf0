"""Choosing the converter for a source, without importing any framework.

Files match on suffix (and the spec's content sniffer when several converters
share a suffix); objects match on the dotted paths of their type's MRO, and
the converter whose declared class is closest to the object's type wins
(an XGBClassifier is an sklearn estimator too, but xgboost is more specific).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .spec import ConverterSpec

#: Modules whose import means a framework was loaded (detection must not).
HEAVY_MODULES = (
    "torch",
    "tensorflow",
    "keras",
    "sklearn",
    "skl2onnx",
    "tf2onnx",
    "onnxmltools",
    "xgboost",
    "lightgbm",
    "catboost",
    "coremltools",
    "libsvm",
    "mxnet",
    "chainer",
    "onnx_chainer",
    "jax",
    "flax",
    "jax2onnx",
)


class DetectionError(Exception):
    """No converter, or more than one equally good converter, fits a source."""


def type_paths(obj: object) -> list[str]:
    """Dotted paths of the classes in ``type(obj).__mro__``, most specific first."""
    return [f"{cls.__module__}.{cls.__qualname__}" for cls in type(obj).__mro__]


def _mro_rank(spec: ConverterSpec, paths: Sequence[str]) -> int | None:
    ranks = [paths.index(t) for t in spec.object_types if t in paths]
    return min(ranks) if ranks else None


def for_object(obj: object, specs: Sequence[ConverterSpec]) -> ConverterSpec:
    paths = type_paths(obj)
    ranked = sorted(
        ((rank, spec.name, spec) for spec in specs if (rank := _mro_rank(spec, paths)) is not None),
        key=lambda item: (item[0], item[1]),
    )
    if not ranked:
        raise DetectionError(f"no converter recognises objects of type {paths[0]}; pass --framework")
    if len(ranked) > 1 and ranked[0][0] == ranked[1][0]:
        raise DetectionError(
            f"converters {ranked[0][1]!r} and {ranked[1][1]!r} both claim {paths[0]}; pass --framework"
        )
    return ranked[0][2]


def suffix_of(path: Path) -> str:
    if path.is_dir():
        return "/"  # directories (SavedModel, golden folders) match the "/" suffix
    return path.suffix.lower()


def for_path(path: Path, specs: Sequence[ConverterSpec]) -> ConverterSpec:
    suffix = suffix_of(path)
    candidates = [s for s in specs if suffix in s.suffixes or suffix in s.unsafe_suffixes]
    if len(candidates) > 1:
        sniffed = [s for s in candidates if s.sniff is not None and _sniff(s, path)]
        candidates = sniffed or [s for s in candidates if s.sniff is None]
    elif len(candidates) == 1 and candidates[0].sniff is not None and suffix not in candidates[0].unsafe_suffixes:
        if not _sniff(candidates[0], path):
            raise DetectionError(f"{path}: not a valid {candidates[0].framework} file")
    if not candidates:
        what = "directory" if suffix == "/" else f"suffix {suffix or '(none)'}"
        raise DetectionError(f"{path}: no converter recognises this {what}; pass --framework")
    if len(candidates) > 1:
        names = ", ".join(sorted(s.name for s in candidates))
        raise DetectionError(f"{path}: several converters read this file ({names}); pass --framework")
    return candidates[0]


def _sniff(spec: ConverterSpec, path: Path) -> bool:
    assert spec.sniff is not None  # callers check
    try:
        return bool(spec.sniff(path))
    except OSError:
        return False


def read_head(path: Path, size: int = 4096) -> bytes:
    """First bytes of a file, for sniffers."""
    with open(path, "rb") as fh:
        return fh.read(size)
