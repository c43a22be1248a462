"""Activation capture by module name (sslkit ViT, timm CNN, Hugging Face LM), row selection and files."""

import numpy as np
import pytest
import torch

from sslkit.analysis.activations import (
    ActivationBuffer,
    capture_image_activations,
    capture_lm_activations,
    find_module,
    load_activations,
    save_activations,
    text_corpus,
    tokens_to_rows,
)
from sslkit.config import ConfigError
from sslkit.data.errors import DataError
from sslkit.nn.vit import build_vit


class _ImageList(torch.utils.data.Dataset):
    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": self.images[i], "label": 0}


def test_buffer_keeps_what_fits():
    buffer = ActivationBuffer(5)
    assert buffer.add(torch.ones(3, 2)) == 3 and not buffer.full
    assert buffer.add(torch.full((4, 2), 2.0)) == 2 and buffer.full
    assert buffer.tensor().tolist() == [[1, 1]] * 3 + [[2, 2]] * 2
    b = ActivationBuffer(4)
    b.add(torch.ones(1, 2))
    with pytest.raises(ValueError, match="width"):
        b.add(torch.ones(1, 3))


def test_token_rows_follow_the_attention_mask():
    h = torch.arange(2 * 4 * 3, dtype=torch.float32).view(2, 4, 3)
    right = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    left = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1]])
    assert torch.equal(tokens_to_rows(h, "all", mask=right), h[right.bool()])
    assert torch.equal(tokens_to_rows(h, "all", mask=right, skip=1), torch.stack([h[0, 1], h[0, 2], h[1, 1]]))
    assert torch.equal(tokens_to_rows(h, "last", mask=right), torch.stack([h[0, 2], h[1, 1]]))
    assert torch.equal(tokens_to_rows(h, "last", mask=left), torch.stack([h[0, 3], h[1, 3]]))
    assert torch.allclose(tokens_to_rows(h, "mean", mask=right), torch.stack([h[0, :3].mean(0), h[1, :2].mean(0)]))
    maps = torch.randn(2, 5, 3, 3)
    assert torch.equal(tokens_to_rows(maps, "all")[4], maps[0, :, 1, 1])
    assert torch.allclose(tokens_to_rows(maps, "mean"), maps.mean((2, 3)))
    with pytest.raises(ConfigError, match="feature map"):
        tokens_to_rows(maps, "last")


def test_vit_block_activations_equal_a_manual_forward_and_stop_early():
    torch.manual_seed(0)
    vit = build_vit({"img_size": 16, "patch_size": 4, "in_chans": 1, "embed_dim": 24, "depth": 3, "num_heads": 2})
    images = torch.rand(10, 1, 16, 16)
    acts = capture_image_activations(vit, "blocks.1", _ImageList(images), tokens="all", batch_size=4,
                                     max_samples=10 * 16)
    with torch.no_grad():
        tokens = vit.blocks[1](vit.blocks[0](vit.prepare_tokens(images)))
    assert acts.shape == (160, 24)
    assert torch.allclose(acts, tokens[:, 1:].reshape(-1, 24), atol=1e-5)  # patch tokens only (prefix skipped)
    # A buffer that fills in the first batch: the blocks above the hooked one never run.
    calls = []
    handle = vit.blocks[2].register_forward_hook(lambda *a: calls.append(1))
    few = capture_image_activations(vit, "blocks.1", _ImageList(images), tokens="first", batch_size=4, max_samples=3)
    handle.remove()
    assert few.shape == (3, 24) and calls == []
    assert torch.allclose(few, tokens[:3, 0], atol=1e-5)
    with pytest.raises(ConfigError, match="blocks.1"):
        find_module(vit, "block.1")


def test_timm_cnn_feature_maps_become_rows():
    import timm

    torch.manual_seed(0)
    cnn = timm.create_model("resnet10t", pretrained=False, num_classes=0).eval()
    images = torch.rand(3, 3, 32, 32)
    acts = capture_image_activations(cnn, "layer1", _ImageList(images), tokens="mean", mean=[0.0] * 3, std=[1.0] * 3)
    with torch.no_grad():
        maps = cnn.layer1(cnn.maxpool(cnn.act1(cnn.bn1(cnn.conv1(images)))))
    assert torch.allclose(acts, maps.mean((2, 3)), atol=1e-5)


class _CharTokenizer:
    """A stand-in tokenizer: one id per character, right padding, the HF call signature."""

    pad_token = None
    eos_token = "~"

    def __call__(self, texts, return_tensors="pt", padding=True, truncation=True, max_length=128):
        ids = [[1 + (ord(c) % 60) for c in t][:max_length] for t in texts]
        width = max(len(i) for i in ids)
        return {"input_ids": torch.tensor([i + [0] * (width - len(i)) for i in ids]),
                "attention_mask": torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i in ids])}


@pytest.mark.slow  # importing transformers' Llama takes ~4 s
def test_hugging_face_lm_hidden_states_by_layer_name():
    transformers = pytest.importorskip("transformers")
    LlamaConfig, LlamaForCausalLM = transformers.LlamaConfig, transformers.LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=3,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
    lm = LlamaForCausalLM(config).eval()
    texts = ["a short one", "a somewhat longer text here", "mid size text"]
    tokenizer = _CharTokenizer()
    acts = capture_lm_activations(lm, tokenizer, "model.layers.1", texts, tokens="all", skip=1, batch_size=2)
    last = capture_lm_activations(lm, tokenizer, "model.layers.1", texts, tokens="last", batch_size=3)
    expected_all, expected_last = [], []
    for text in texts:  # one at a time: no padding at all
        enc = tokenizer([text])
        with torch.no_grad():
            hidden = lm(**enc, output_hidden_states=True).hidden_states[2][0]  # output of layers.1
        expected_all.append(hidden[1:])
        expected_last.append(hidden[-1])
    assert torch.allclose(acts, torch.cat(expected_all), atol=1e-5)
    assert torch.allclose(last, torch.stack(expected_last), atol=1e-5)
    assert tokenizer.pad_token == "~"


def test_activation_files_round_trip_and_bad_files_fail_clearly(tmp_path):
    x = torch.randn(20, 7)
    np.save(tmp_path / "a.npy", x.numpy())
    torch.save(x, tmp_path / "a.pt")
    torch.save({"activations": x, "labels": torch.arange(20)}, tmp_path / "b.pt")
    save_activations(tmp_path / "a.safetensors", x)
    for name in ("a.npy", "a.pt", "b.pt", "a.safetensors"):
        assert torch.equal(load_activations(tmp_path / name), x)
    torch.save(x.view(4, 5, 7), tmp_path / "seq.pt")
    assert load_activations(tmp_path / "seq.pt").shape == (20, 7)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    bad = {"obj.npy": "could not be read", "nan.npy": "NaN", "vec.npy": "expected", "a.csv": "suffix"}
    np.save(tmp_path / "nan.npy", np.full((3, 2), np.nan))
    np.save(tmp_path / "vec.npy", np.ones(3))
    (tmp_path / "a.csv").write_text("1,2\n")
    for name, message in bad.items():
        with pytest.raises(DataError, match=message):
            load_activations(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        load_activations(tmp_path / "missing.npy")


def test_text_corpus_is_offline_and_reads_paragraph_files(tmp_path):
    texts = text_corpus("pydoc")
    assert len(texts) > 500 and all(len(t) >= 40 for t in texts)
    path = tmp_path / "t.txt"
    path.write_text("first paragraph that is long enough to keep it\n\nshort\n\nsecond paragraph, also long enough to keep\n")
    assert text_corpus(str(path)) == ["first paragraph that is long enough to keep it",
                                      "second paragraph, also long enough to keep"]
    with pytest.raises(DataError, match="neither"):
        text_corpus(str(tmp_path / "none.txt"))
