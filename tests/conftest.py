"""Shared test fixtures."""

import pytest
import torch


def build_tiny_causal_lm(texts, *, layers: int = 2, hidden: int = 24, context: int = 64):
    """A randomly initialised Llama with a word-level tokenizer over the words of ``texts`` (seed 0)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = sorted({w for t in texts for w in t.split()})
    vocab = {"<pad>": 0, "<unk>": 1, "<s>": 2, **{w: i + 3 for i, w in enumerate(words)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>",
                                        bos_token="<s>", eos_token="<s>")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=context, pad_token_id=0, bos_token_id=2, eos_token_id=2)
    return LlamaForCausalLM(config).eval(), tokenizer


@pytest.fixture(scope="session")
def tiny_causal_lm():
    """Factory fixture: ``tiny_causal_lm(texts, layers=2, hidden=24, context=64) -> (model, tokenizer)``."""
    return build_tiny_causal_lm
