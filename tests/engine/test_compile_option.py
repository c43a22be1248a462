"""trainer.compile: which modules are compiled (in place, names unchanged), and the FSDP refusal. The speed is
measured by benchmarks/speed_levers.py, not here (compiling costs minutes on a CPU)."""

import pytest
import torch

from sslkit.config import ConfigError, load_config
from sslkit.engine.builders import build_method
from sslkit.engine.compile import compile_step_modules, compiled_targets

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
TINY = ["model.depth=2", "model.embed_dim=32", "model.num_heads=2", "dinov2.head_out_dim=64",
        "dinov2.head_hidden_dim=32", "dinov2.head_bottleneck_dim=16"]


def test_blocks_and_head_mlps_of_student_and_teacher_are_compiled_in_place(monkeypatch):
    cfg = load_config(ROOT / "recipes/dinov2-tiny.yaml", TINY)
    method = build_method(cfg, 3)
    names_before = list(method.state_dict())
    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kw: compiled.append((self, kw)))
    count = compile_step_modules(method)
    # 2 blocks + 1 head MLP, for the student and for the EMA teacher.
    assert count == len(compiled) == 2 * (2 + 1)
    assert all(kw == {"dynamic": False, "mode": None} for _, kw in compiled)
    assert {id(m) for m, _ in compiled} == {id(m) for m in compiled_targets(method)}
    assert list(method.state_dict()) == names_before


def test_compile_is_refused_with_fsdp_in_one_sentence():
    with pytest.raises(ConfigError, match="trainer.compile.*fsdp"):
        load_config(ROOT / "recipes/dinov2-tiny.yaml", ["trainer.compile=true", "trainer.strategy=fsdp"])
