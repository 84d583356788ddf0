"""``onnxgate plugin new NAME``: start a converter plugin as an installable package."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from string import Template

from onnxgate.plugins.errors import UsageError

#: template file -> where it lands in the new package ({package} is filled in).
FILES = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "tox.ini.tmpl": "tox.ini",
    "__init__.py.tmpl": "{package}/__init__.py",
    "converter.py.tmpl": "{package}/converter.py",
    "test_contract.py.tmpl": "tests/test_contract.py",
}
_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


def add_parser(sub) -> None:
    p = sub.add_parser("plugin", help="start a converter plugin (plugin new NAME)")
    actions = p.add_subparsers(dest="plugin_action", metavar="ACTION", required=True)
    new = actions.add_parser(
        "new", help="write an installable plugin package: converter module, contract tests, README, tox.ini"
    )
    new.add_argument("name", help="converter name, e.g. 'jax' (package onnxgate-jax, module onnxgate_jax)")
    new.add_argument("--dir", type=Path, default=Path("."), help="where to create onnxgate-NAME/ (default: .)")
    new.add_argument("--framework", help="the framework's display name (default: NAME)")
    new.set_defaults(run=run)


def names(name: str, framework: str = "") -> dict[str, str]:
    from onnxgate.plugins import API_VERSION, normalize_name

    key = normalize_name(name)
    if not _NAME.match(key):
        raise UsageError(f"plugin name {name!r}: use lower-case letters, digits and '-', starting with a letter")
    major = int(API_VERSION.split(".")[0])
    return {
        "name": key,
        "framework": framework or name,
        "distribution": f"onnxgate-{key}",
        "package": f"onnxgate_{key.replace('-', '_')}",
        "module": key.replace("-", "_"),
        "api": API_VERSION,
        "next_major": str(major + 1),
    }


def create(name: str, parent: Path, framework: str = "") -> Path:
    """Write the package under ``parent``; all of it or nothing."""
    from importlib import resources

    values = names(name, framework)
    target = Path(parent) / values["distribution"]
    if target.exists():
        raise UsageError(f"{target}: already exists; choose another --dir or name")
    if not Path(parent).is_dir():
        raise UsageError(f"--dir {parent}: no such directory")
    templates = resources.files("onnxgate.pipeline.cli") / "plugin_template"
    staging = Path(tempfile.mkdtemp(prefix=".onnxgate-plugin-", dir=parent))
    try:
        for template, relative in FILES.items():
            path = staging / relative.format(package=values["package"])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(Template((templates / template).read_text()).substitute(values))
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def run(args) -> int:
    target = create(args.name, args.dir, args.framework or "")
    values = names(args.name, args.framework or "")
    print(f"created {target}")
    print(f"next: pip install -e '{target}[test]' && onnxgate plugins && pytest {target / 'tests'}")
    print(f"then fill in {values['package']}/converter.py until the contract tests pass")
    return 0
