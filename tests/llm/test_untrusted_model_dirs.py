"""Hugging Face directories are user input (issue 23, item 6): nothing they ship runs, absurd sizes are refused.

Every ``from_pretrained`` in sslkit passes ``trust_remote_code=False`` (checked on the source, so a new call
cannot forget it), and each entry point that loads a user directory — ``load_causal_lm`` (``sslkit ntps``)
and ``load_text_backbone`` (``sslkit ssti``, LoRA) — refuses a directory whose ``auto_map`` names Python
files with one sentence naming the directory, without importing them.
"""

import ast
import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from sslkit.config import ConfigError  # noqa: E402
from sslkit.llm.lora import load_text_backbone  # noqa: E402
from sslkit.llm.models import load_causal_lm  # noqa: E402

SRC = Path(__file__).resolve().parents[2] / "src" / "sslkit"

# Importing this file is the attack: it leaves a marker (an absolute path: transformers would import a copy
# of the file from its module cache, not the file in the directory).
EVIL_CODE = '''
import pathlib
pathlib.Path(MARKER).touch()
from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizer
class EvilConfig(PretrainedConfig):
    model_type = "evil"
class EvilForCausalLM(PreTrainedModel):
    config_class = EvilConfig
class EvilTokenizer(PreTrainedTokenizer):
    pass
'''


def _from_pretrained_calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "from_pretrained":
            yield node


def test_every_from_pretrained_in_sslkit_passes_trust_remote_code_false():
    calls, offenders = 0, []
    for path in sorted(SRC.rglob("*.py")):
        for call in _from_pretrained_calls(ast.parse(path.read_text(encoding="utf-8"))):
            calls += 1
            flag = next((k.value for k in call.keywords if k.arg == "trust_remote_code"), None)
            if not (isinstance(flag, ast.Constant) and flag.value is False):
                offenders.append(f"{path.relative_to(SRC)}:{call.lineno}")
    assert calls >= 9, calls  # the scan really sees the calls (models.py and lora.py)
    assert not offenders, f"from_pretrained without trust_remote_code=False: {offenders}"


def _tiny_llama(directory: Path) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=32, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=16)
    LlamaForCausalLM(config).save_pretrained(str(directory))
    return directory


def _evil_model_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "evil-model"
    directory.mkdir()
    (directory / "modeling_evil.py").write_text(f"MARKER = {str(directory / 'PWNED')!r}" + EVIL_CODE)
    (directory / "config.json").write_text(json.dumps({
        "model_type": "evil", "architectures": ["EvilForCausalLM"],
        "auto_map": {"AutoConfig": "modeling_evil.EvilConfig", "AutoModel": "modeling_evil.EvilForCausalLM",
                     "AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}}))
    return directory


def _evil_tokenizer_dir(tmp_path: Path) -> Path:
    # A genuine (tiny) Llama whose tokenizer_config.json alone asks for custom code.
    directory = _tiny_llama(tmp_path / "evil-tokenizer")
    (directory / "modeling_evil.py").write_text(f"MARKER = {str(directory / 'PWNED')!r}" + EVIL_CODE)
    (directory / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "EvilTokenizer", "auto_map": {"AutoTokenizer": ["modeling_evil.EvilTokenizer", None]}}))
    return directory


LOADERS = {"load_causal_lm": (load_causal_lm, ValueError), "load_text_backbone": (load_text_backbone, ConfigError)}


@pytest.mark.parametrize("make", [_evil_model_dir, _evil_tokenizer_dir], ids=["config-auto_map", "tokenizer-auto_map"])
@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_a_directory_with_custom_code_is_refused_without_running_it(tmp_path, make, loader):
    load, error = LOADERS[loader]
    directory = make(tmp_path)
    with pytest.raises(error) as caught:
        load(str(directory))
    message = str(caught.value)
    assert str(directory) in message and "trust_remote_code=False" in message and "\n" not in message, message
    assert not (directory / "PWNED").exists()


@pytest.mark.parametrize("key, value", [("hidden_size", 10**9), ("num_hidden_layers", -1), ("num_hidden_layers", 10**6),
                                        ("vocab_size", 0), ("intermediate_size", "big")])
@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_absurd_sizes_in_config_json_are_refused_before_building(tmp_path, loader, key, value):
    load, error = LOADERS[loader]
    directory = _tiny_llama(tmp_path / "model")
    config = json.loads((directory / "config.json").read_text())
    config[key] = value
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(error) as caught:
        load(str(directory))
    message = str(caught.value)
    assert str(directory) in message and key in message and "\n" not in message, message


def test_the_evil_directory_really_runs_code_when_imported(tmp_path):
    # Sanity for the refusal tests above: importing the shipped file does leave the marker. (Not through
    # transformers with trust_remote_code=True: that would copy the file into the user's module cache.)
    import runpy

    directory = _evil_model_dir(tmp_path)
    runpy.run_path(str(directory / "modeling_evil.py"))
    assert (directory / "PWNED").exists()
