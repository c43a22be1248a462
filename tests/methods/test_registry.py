"""The method registry (issue 20, item 1): a method is one file, and nothing outside ``methods/`` names one."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from sslkit.config import ConfigError, RunConfig, load_config
from sslkit.methods.registry import MethodSpec, method_spec, register, registered_methods

SRC = Path(__file__).resolve().parents[2] / "src" / "sslkit"


def test_every_method_has_its_recipe_section_and_nothing_else_does():
    methods = registered_methods()
    assert {"byol", "dinov2", "mae", "simclr", "vicreg"} <= set(methods)
    fields = {f.name: f.type for f in dataclasses.fields(RunConfig)}
    for name, spec in methods.items():
        assert fields[name] is spec.config and dataclasses.is_dataclass(spec.config)
        assert isinstance(getattr(RunConfig(), name), spec.config)
    generic = set(fields) - set(methods)
    assert generic == {"method", "data", "crops", "model", "optim", "trainer", "monitor", "curriculum"}


def test_unknown_method_names_the_registered_ones():
    with pytest.raises(ConfigError) as err:
        load_config({"method": "swav"})
    assert all(repr(name) in str(err.value) for name in registered_methods())


def test_a_name_registers_once():
    spec = method_spec("simclr")
    assert register(spec) is spec  # the same spec again is harmless (a module imported twice)
    with pytest.raises(ValueError, match="already registered"):
        register(MethodSpec(name="simclr", config=spec.config, build=spec.build, collate=spec.collate))


def _code_lines(path: Path) -> list[str]:
    return [line.split("#", 1)[0] for line in path.read_text(encoding="utf-8").splitlines()]


def test_no_method_is_named_outside_methods():
    """Config, engine and commands dispatch through the registry: no ``method ==`` branch, and no method's
    name in code outside its own files (recipes, docs and comments may name them)."""
    names = [name for name in registered_methods() if name != "dinov2"]  # 'dinov2' also names the spec file
    offenders = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith("methods/"):
            continue
        for i, line in enumerate(_code_lines(path), 1):
            if re.search(r"\b(cfg|config)\.method\s*(==|!=|in\b|not in\b)", line):
                offenders.append(f"{rel}:{i}: {line.strip()}")
            if rel.split("/")[0] in ("config.py", "config_ranges.py", "engine", "commands"):
                for name in names:
                    if re.search(rf"[\"']{name}[\"']|\b{name}\.", line):
                        offenders.append(f"{rel}:{i}: {line.strip()}")
    assert offenders == []


def test_byol_lives_only_in_its_own_files():
    """Adding BYOL touched its method file, its loss, its recipe and its tests: no other source's code uses it
    (a docstring may mention the method)."""
    used = re.compile(r"[\"']byol[\"']|\.byol\b|\bimport\b.*\bbyol\b")
    mentions = sorted(path.relative_to(SRC).as_posix() for path in SRC.rglob("*.py")
                      if any(used.search(line) for line in _code_lines(path)))
    assert mentions == ["methods/byol.py"]  # which imports its loss, functional/byol.py
    assert (SRC / "functional" / "byol.py").is_file()
