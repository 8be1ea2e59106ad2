"""One contract over every source module: registered, documented, configured and isolated alike."""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import ValidationError

import sources
from bridge.plugins import SOURCES, Source, SourceConfig

SOURCE_DIR = Path(sources.__file__).resolve().parent
MODULES = sorted(p.stem for p in SOURCE_DIR.glob("*.py") if not p.stem.startswith("_"))
#: The fields each type requires besides name and type (a minimal valid config).
REQUIRED: dict[str, dict[str, Any]] = {"generic": {"summary": "title"}}
#: What a source module may import: the stdlib, pydantic, orjson, the bridge contracts, shared helpers.
ALLOWED_IMPORTS = {"pydantic", "orjson", "bridge.model", "bridge.errors", "bridge.plugins", "sources._common",
                   "sources", "__future__"}


def minimal_config(type_name: str, name: str = "contract") -> SourceConfig:
    cls = SOURCES[type_name]
    return cls.config_model.model_validate({"name": name, "type": type_name, **REQUIRED.get(type_name, {})})


def test_every_module_is_registered_under_its_name() -> None:
    """Each sources/<name>.py registers exactly one class as <name>, and nothing else is registered."""
    assert {"alertmanager", "generic", "pagerduty", "prometheus"} <= set(MODULES)
    for name in MODULES:
        assert name in SOURCES, f"sources/{name}.py is not registered"
        assert SOURCES[name].__module__ == f"sources.{name}"
        assert SOURCES[name].type_name == name
    assert {cls.__module__ for cls in SOURCES.values()} <= {f"sources.{name}" for name in MODULES}


def test_package_imports_each_module_by_name() -> None:
    """sources/__init__.py has one import line per module, so adding a source is one greppable line."""
    tree = ast.parse((SOURCE_DIR / "__init__.py").read_text())
    imported = sorted(
        alias.name for node in tree.body if isinstance(node, ast.ImportFrom) and node.module == "sources"
        for alias in node.names
    )
    assert imported == MODULES


@pytest.mark.parametrize("name", MODULES)
def test_module_and_class_are_documented(name: str) -> None:
    """The module docstring opens with a one-sentence summary; the class has a docstring."""
    module = sys.modules[f"sources.{name}"]
    doc = module.__doc__ or ""
    first_line = doc.strip().splitlines()[0] if doc.strip() else ""
    assert first_line.endswith("."), f"sources/{name}.py: first docstring line must be a sentence"
    assert len(doc.strip().splitlines()) > 2, "the docstring documents the payload and the field mapping"
    assert (SOURCES[name].__doc__ or "").strip()


@pytest.mark.parametrize("name", MODULES)
def test_config_model_contract(name: str) -> None:
    """config_model is a frozen SourceConfig, `type` is the module name literal, every field is described."""
    model = SOURCES[name].config_model
    assert issubclass(model, SourceConfig)
    assert model.model_config.get("frozen") is True
    assert model.model_config.get("extra") == "forbid"
    assert model.model_fields["type"].annotation == Literal[name]
    fields = model.model_fields.items()
    undocumented = [field for field, info in fields if not (info.description or "").strip()]
    assert undocumented == []
    assert (model.__doc__ or "").strip()


@pytest.mark.parametrize("name", MODULES)
def test_config_rejects_unknown_fields_and_other_types(name: str) -> None:
    """A misspelt option or another source's type is a config error, not silently ignored."""
    model = SOURCES[name].config_model
    base = {"name": "x", "type": name, **REQUIRED.get(name, {})}
    with pytest.raises(ValidationError):
        model.model_validate({**base, "severity_lable": "sev"})
    with pytest.raises(ValidationError):
        model.model_validate({**base, "type": "not-" + name})


@pytest.mark.parametrize("name", MODULES)
def test_instance_satisfies_the_source_protocol(name: str) -> None:
    """Built from a minimal config, the source satisfies Source and keeps its name and config."""
    config = minimal_config(name, "my-source")
    source = SOURCES[name](config)
    assert (source.name, source.config) == ("my-source", config)
    assert isinstance(SOURCES[name].compat_paths, tuple)
    assert all(path.startswith("/") for path in SOURCES[name].compat_paths)
    status, body = source.error_body("alerts[0].labels", "is required", 400)
    assert status == 400
    assert (body["field"], body["reason"]) == ("alerts[0].labels", "is required")
    assert isinstance(source, Source)


@pytest.mark.parametrize("name", MODULES)
def test_module_imports_only_the_model_layer(name: str) -> None:
    """Sources import the stdlib, pydantic, orjson and the bridge contracts, never the web framework."""
    tree = ast.parse((SOURCE_DIR / f"{name}.py").read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    stdlib = sys.stdlib_module_names
    foreign = {m for m in imported if m not in ALLOWED_IMPORTS and m.split(".")[0] not in stdlib}
    assert foreign == set()
