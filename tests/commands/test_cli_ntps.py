"""`sslkit ntps` end to end: a tiny offline causal LM on a CSV, the bundled SmolLM2 on polarity (slow), and one
clear line with exit code 2 for each kind of bad input."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from sslkit.cli import main


def write_tiny_lm(factory, directory, texts):
    """A randomly initialised 2-layer Llama with a word-level tokenizer, saved like a hub checkpoint."""
    model, tokenizer = factory(texts, hidden=32)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def labelled_texts(n: int = 80, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    pos, neg, filler = ["good", "great", "fine", "nice"], ["bad", "awful", "poor", "dull"], ["the", "a", "film", "plot", "was", "and"]
    rows = []
    for i in range(n):
        label = i % 2
        words = []
        for _ in range(int(torch.randint(4, 12, (1,), generator=g))):
            pool = (pos if label else neg) if torch.rand(1, generator=g) < 0.4 else filler
            words.append(pool[int(torch.randint(len(pool), (1,), generator=g))])
        rows.append((" ".join(words), "pos" if label else "neg"))
    return rows


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tiny_causal_lm):
    root = tmp_path_factory.mktemp("ntps_cli")
    rows = labelled_texts()
    data = root / "reviews.csv"
    with data.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    model = write_tiny_lm(tiny_causal_lm, root / "tiny-llama", [t for t, _ in rows])
    return root, model, data


def test_cli_ntps_on_tiny_model_writes_table_report_and_plot(tiny, capsys):
    root, model, data = tiny
    out = root / "run"
    assert main(["ntps", "--model", str(model), "--data", str(data), "--out", str(out), "--batch-size", "16"]) == 0
    report = json.loads((out / "report.json").read_text())
    sweep = report["sweeps"][0]
    assert [r["layer"] for r in sweep["rows"]] == [0, 1, 2]
    assert sweep["num_texts"] == 80 and sweep["class_names"] == ["neg", "pos"]
    for row in sweep["rows"]:
        assert 0.0 <= row["ntps"] <= 1.0 and 0.0 <= row["ntps_whitened"] <= 1.0
        assert 0.0 <= row["probe_accuracy"] <= 1.0
    # The sentiment words are a linear feature of the mean token at every layer: the held-out probe finds them.
    assert max(r["probe_accuracy"] for r in sweep["rows"]) > 0.8
    csv_rows = (out / "ntps.csv").read_text().splitlines()
    assert len(csv_rows) == 4 and csv_rows[0].startswith("dataset,layer,ntps")
    assert (out / "ntps.png").stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "NTPS per layer" in printed and "Spearman" in printed


def test_cli_ntps_truncation_is_reported_and_k_fraction_and_ascending_order(tiny, capsys):
    root, model, data = tiny
    out = root / "run-trunc"
    assert main(["ntps", "--model", str(model), "--data", str(data), "--out", str(out), "--max-tokens", "6",
                 "--layers", "1,-1", "--k", "0.5", "--order", "ascending"]) == 0
    report = json.loads((out / "report.json").read_text())
    sweep = report["sweeps"][0]
    assert sweep["truncated"] > 0 and sweep["order"] == "ascending"
    assert [r["layer"] for r in sweep["rows"]] == [1, 2]
    assert all(r["k_v"] == max(1, int(0.5 * r["rank_v"])) for r in sweep["rows"])
    assert "were truncated" in capsys.readouterr().out


@pytest.mark.parametrize("case, message", [
    ("not_causal", "is not a causal language model"),
    ("one_class", "1 class"),
    ("k_too_large", "larger than the retained rank"),
    ("missing_model", "neither 'smollm2' nor an existing directory"),
    ("bad_layer", "does not exist"),
])
def test_cli_ntps_bad_input_gives_one_clear_line(tiny, tmp_path, capsys, case, message):
    root, model, data = tiny
    args = ["ntps", "--model", str(model), "--data", str(data), "--out", str(tmp_path / "run")]
    if case == "not_causal":
        from transformers import BertConfig, BertModel

        BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=16)).save_pretrained(tmp_path / "bert")
        args[2] = str(tmp_path / "bert")
        capsys.readouterr()  # drop transformers' "Writing model shards" bar
    elif case == "one_class":
        one = tmp_path / "one.jsonl"
        one.write_text("\n".join(json.dumps({"text": f"good film {i}", "label": "pos"}) for i in range(10)))
        args[4] = str(one)
    elif case == "k_too_large":
        args += ["--k", "500"]
    elif case == "missing_model":
        args[2] = str(tmp_path / "nowhere")
    elif case == "bad_layer":
        args += ["--layers", "7"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


@pytest.mark.slow
def test_cli_ntps_bundled_smollm2_on_polarity(tmp_path):
    pytest.importorskip("transformers")
    from sslkit.llm.models import smollm2_gguf_path

    smollm2_gguf_path()
    out = tmp_path / "run"
    assert main(["ntps", "--data", "polarity", "--layers", "0,15,30", "--out", str(out)]) == 0
    sweep = json.loads((out / "report.json").read_text())["sweeps"][0]
    assert sweep["model"] == "smollm2" and sweep["num_texts"] == 200
    assert [r["layer"] for r in sweep["rows"]] == [0, 15, 30]
    # 200 sentences in 576 dimensions: Σ_xx has rank N = 200 exactly (float64 statistics), C₀ is full rank.
    assert all(r["rank_u"] == 200 and r["rank_v"] == 576 for r in sweep["rows"])
    # Sentence sentiment is linearly decodable above chance from SmolLM2's middle/late layers.
    assert max(r["probe_accuracy"] for r in sweep["rows"][1:]) > 0.6


@pytest.mark.slow
def test_cli_ntps_lora_gain_is_reported_next_to_ntps(tiny, capsys):
    root, model, data = tiny
    out = root / "run-lora"
    assert main(["ntps", "--model", str(model), "--data", str(data), "--out", str(out), "--layers", "-1",
                 "--lora", "--lora-steps", "20"]) == 0
    sweep = json.loads((out / "report.json").read_text())["sweeps"][0]
    lora = sweep["lora"]
    assert lora["steps"] == 20 and lora["rank"] == 32
    assert lora["accuracy"] > 0.6  # the sentiment words are easy: 20 LoRA + head steps already beat chance
    assert lora["gain"] == pytest.approx(lora["accuracy"] - sweep["rows"][-1]["probe_accuracy"])
    assert "LoRA: accuracy" in capsys.readouterr().out
