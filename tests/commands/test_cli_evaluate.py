"""`sslkit evaluate` end to end: a freshly pretrained sslkit run and timm:resnet18 side by side, the report's
numbers recomputed from the cached features, its settings, the HTML in headless Chromium, and the errors."""

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import torch

from sslkit.cli import main
from sslkit.eval.knn import KNNConfig, knn_protocol
from sslkit.eval.linear import DINOV2_LRS
from sslkit.eval.models import compute_features
from sslkit.eval.report import DEFAULT_PROTOCOLS, EvaluationSettings
from sslkit.functional.metrics import rankme
from tiny_overrides import tiny_dinov2

RECIPE = str(Path(__file__).resolve().parents[2] / "recipes" / "dinov2-tiny.yaml")
# The shared tiny overrides (tests/tiny_overrides.py): a 2-block width-64 ViT on 16-px digits, 8 steps.
TINY = tiny_dinov2()

PROTOCOLS = "knn,linear,fewshot,rankme,alpha_req,similarity"


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A tiny foundation run, then `sslkit evaluate RUN timm:resnet18 --data digits` on it (run twice)."""
    root = tmp_path_factory.mktemp("evaluate")
    run_dir = root / "tiny-digits"
    assert main(["pretrain", "--recipe", RECIPE, "--data", "digits", "--out", str(run_dir), *TINY]) == 0
    args = ["evaluate", str(run_dir), "timm:resnet18", "--data", "digits", "--protocols", PROTOCOLS,
            "--linear-lrs", "0.01,0.1", "--linear-wds", "0,0.001", "--fewshot-episodes", "5",
            "--cache-dir", str(root / "cache")]
    assert main([*args, "--out", str(root / "first")]) == 0
    again = [a if a != PROTOCOLS else "knn,rankme" for a in args]
    assert main([*again, "--out", str(root / "second")]) == 0
    return {"root": root, "run": run_dir, "out": root / "first", "second": root / "second"}


@pytest.mark.slow
def test_report_holds_both_models_and_every_setting(evaluated, capsys):
    report = json.loads((evaluated["out"] / "report.json").read_text())
    assert [m["name"] for m in report["models"]] == ["tiny-digits", "timm:resnet18"]
    assert report["protocols"] == PROTOCOLS.split(",")
    settings = report["settings"]
    assert settings["knn"]["ks"] == [10, 20, 100, 200] and settings["knn"]["temperature"] == 0.07
    assert settings["linear"]["lrs"] == [0.01, 0.1] and settings["linear"]["weight_decays"] == [0.0, 0.001]
    for key in ("epochs", "min_steps", "batch_size", "momentum", "val_fraction", "standardize"):
        assert key in settings["linear"]
    assert settings["seed"] == 0 and settings["linear"]["seed"] == 0 and settings["fewshot"]["seed"] == 0
    assert settings["pooling"] == "cls" and settings["rankme_samples"] == 25_600
    assert report["data"]["splits"] == {"train": 1437, "test": 360}
    features = report["models"][0]["features"]["test/cls"]
    assert features["image_size"] == 16 and features["dim"] == 64  # the run's own input size and width
    assert report["models"][1]["features"]["test/cls"]["dim"] == 512
    for name in ("report.html", "knn_accuracy_vs_k.png", "linear_probe_sweep.png", "singular_value_spectrum.png",
                 "fewshot_accuracy.png"):
        assert (evaluated["out"] / name).stat().st_size > 1000, name
    table = report["table"]
    assert table["columns"] == ["tiny-digits", "timm:resnet18"]
    assert any(row["metric"].startswith("kNN top-1 % (k=20") for row in table["rows"])
    sim = report["similarity"]
    assert sim["cka_linear"][0][0] == 1.0 and 0.0 <= sim["cka_linear"][0][1] <= 1.0
    assert sim["cka_linear"][0][1] == sim["cka_linear"][1][0]


@pytest.mark.slow
def test_report_numbers_equal_the_protocols_on_the_cached_features(evaluated):
    report = json.loads((evaluated["out"] / "report.json").read_text())
    cache = evaluated["root"] / "cache"
    run = report["models"][0]
    x_tr, y_tr = compute_features(str(evaluated["run"]), "digits", "train", cache_dir=cache)
    x_te, y_te = compute_features(str(evaluated["run"]), "digits", "test", cache_dir=cache)
    expected = knn_protocol(x_tr, y_tr, x_te, y_te, KNNConfig())
    assert run["results"]["knn"]["accuracy"] == {str(k): v for k, v in expected.accuracy.items()}
    assert run["results"]["rankme"]["rankme"] == pytest.approx(rankme(x_te))
    assert 1.0 <= run["results"]["rankme"]["rankme"] <= 64
    linear = run["results"]["linear"]
    assert linear["test_accuracy"] == linear["test_accuracy_all"][linear["best"]["head"]]
    assert max(linear["val_accuracy"]) == linear["best"]["val_accuracy"]
    # Eight pretraining steps already beat chance (10 %) on digits by a wide margin.
    assert expected.accuracy[20] > 0.3 and linear["test_accuracy"] > 0.3


@pytest.mark.slow
def test_second_evaluation_reads_the_feature_cache(evaluated):
    report = json.loads((evaluated["second"] / "report.json").read_text())
    for model in report["models"]:
        assert {info["cache"] for info in model["features"].values()} == {"hit"}
    first = json.loads((evaluated["out"] / "report.json").read_text())
    assert [m["results"]["knn"]["accuracy"] for m in report["models"]] == \
        [m["results"]["knn"]["accuracy"] for m in first["models"]]


def test_defaults_are_the_issue_defaults():
    settings = EvaluationSettings()
    assert settings.protocols == DEFAULT_PROTOCOLS == ("knn", "linear", "rankme")
    assert settings.knn.ks == (10, 20, 100, 200) and settings.knn.temperature == 0.07
    assert settings.knn.metric == "cosine" and settings.linear.lrs == DINOV2_LRS
    from sslkit.cli import _parser

    args = _parser().parse_args(["evaluate", "timm:resnet18", "--data", "digits"])
    from sslkit.commands.evaluate import settings_from_args

    parsed = settings_from_args(args)
    assert parsed.to_dict() == EvaluationSettings().to_dict()


# ------------------------------------------------------------------------------------------ Chromium


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (fds 3 and 4): no driver package needed."""

    def __init__(self, profile: Path):
        cmd_read, cmd_write = os.pipe()
        out_read, out_write = os.pipe()

        def child_fds():
            a, b = os.dup(cmd_read), os.dup(out_write)  # move out of the way before landing on 3 and 4
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [shutil.which("chromium"), "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
             "--no-first-run", f"--user-data-dir={profile}", "about:blank"],
            pass_fds=(3, 4), preexec_fn=child_fds, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(cmd_read)
        os.close(out_write)
        self.write, self.read = cmd_write, out_read
        self.next_id, self.events, self.buffer = 0, [], b""

    def _message(self, deadline):
        while b"\0" not in self.buffer:
            if time.time() > deadline:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self.read, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method, params=None, session=None, timeout=60):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.write, json.dumps(message).encode() + b"\0")
        deadline = time.time() + timeout
        while True:
            reply = self._message(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, method, timeout=60):
        deadline = time.time() + timeout
        while not any(e.get("method") == method for e in self.events):
            self.events.append(self._message(deadline))

    def close(self):
        try:
            self.send("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self.write)
        os.close(self.read)


def problems(events):
    """Console errors/warnings, uncaught exceptions and failed loads among DevTools events."""
    out = []
    for e in events:
        method, params = e.get("method"), e.get("params", {})
        if method == "Runtime.exceptionThrown":
            out.append(params["exceptionDetails"].get("text"))
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "warning", "assert"):
            out.append(params["args"])
        elif method == "Log.entryAdded" and params["entry"]["level"] in ("error", "warning"):
            out.append(params["entry"]["text"])
    return out


@pytest.mark.slow
def test_report_html_renders_in_headless_chromium(evaluated, tmp_path):
    if shutil.which("chromium") is None:
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is not installed; .ci/run installs it.")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    page = evaluated["out"] / "report.html"
    browser = Chromium(tmp_path / "profile")
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime.enable", "Log.enable", "Page.enable"):
            browser.send(domain, session=session)
        browser.send("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
        browser.wait_for("Page.loadEventFired")
        state = browser.send("Runtime.evaluate", {"returnByValue": True, "expression": """JSON.stringify({
            ready: document.body.getAttribute('data-ready'),
            headers: Array.from(document.querySelectorAll('#summary thead th')).map(th => th.textContent),
            rows: Array.from(document.querySelectorAll('#summary tbody tr')).map(
                tr => Array.from(tr.children).map(td => td.textContent)),
            best: document.querySelectorAll('#summary td.best').length,
            images: Array.from(document.images).map(img => [img.complete, img.naturalWidth]),
            external: Array.from(document.querySelectorAll('[src],[href]')).map(e => e.getAttribute('src') || e.getAttribute('href')).filter(u => !u.startsWith('data:')),
            visible: document.querySelector('#summary').getBoundingClientRect().height})"""}, session=session)
        shot = browser.send("Page.captureScreenshot", {"format": "png"}, session=session)
        errors = problems(browser.events)
    finally:
        browser.close()
    state = json.loads(state["result"]["value"])
    report = json.loads((evaluated["out"] / "report.json").read_text())
    assert errors == []
    assert state["ready"] == "1"  # the inline script ran to the end
    assert state["headers"] == ["metric", "tiny-digits", "timm:resnet18"]
    assert [r[0] for r in state["rows"]] == [r["metric"] for r in report["table"]["rows"]]
    assert [r[1:] for r in state["rows"]] == [r["values"] for r in report["table"]["rows"]]
    assert state["best"] >= 1 and state["visible"] > 100
    assert len(state["images"]) == 4 and all(done and width > 100 for done, width in state["images"])
    assert state["external"] == []  # self-contained: nothing is fetched
    assert len(shot["data"]) > 10_000


# ------------------------------------------------------------------------------------------ errors


def test_a_directory_that_is_not_an_sslkit_run(tmp_path, capsys):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.pt").write_bytes(b"\0")
    assert main(["evaluate", str(tmp_path / "model"), "--data", "digits", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "is not an sslkit run" in err and str(tmp_path / "model") in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "report.json").exists()


@pytest.mark.slow
def test_labels_missing_for_a_supervised_protocol(tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "unlabelled"
    folder.mkdir()
    for i in range(12):
        Image.new("L", (16, 16), color=i * 20).save(folder / f"{i}.png")
    args = ["evaluate", "timm:resnet18", "--data", str(folder), "--out", str(tmp_path / "out"), "--no-cache"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "need labels" in err and "unlabelled" in err and "--protocols rankme" in err
    # The label-free protocols run on it.
    assert main([*args, "--protocols", "rankme,alpha_req", "--image-size", "32"]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["models"][0]["results"]["rankme"]["samples"] == 12


def test_fewer_samples_than_k(tmp_path, capsys):
    assert main(["evaluate", "timm:resnet18", "--data", "digits", "--protocols", "knn", "--knn-k", "10,5000",
                 "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert "k=5000 needs at least 5000 training samples" in err and "1437" in err


def test_unknown_protocol_and_pooling(tmp_path, capsys):
    assert main(["evaluate", "timm:resnet18", "--data", "digits", "--protocols", "knn,magic",
                 "--out", str(tmp_path / "out")]) == 2
    assert "Unknown protocol(s) ['magic']" in capsys.readouterr().err


@pytest.mark.slow
def test_segmentation_on_shapes_with_an_sslkit_backbone(tmp_path):
    from sslkit.nn.export import save_backbone
    from sslkit.nn.vit import ViT, ViTConfig

    torch.manual_seed(0)
    vit = ViT(ViTConfig(img_size=32, patch_size=4, in_chans=3, embed_dim=48, depth=2, num_heads=2,
                        layerscale_init=None))
    save_backbone(vit, tmp_path / "vit-shapes", mean=[0.46, 0.42, 0.40], std=[0.24, 0.23, 0.23])
    assert main(["evaluate", str(tmp_path / "vit-shapes"), "--data", "shapes", "--num-samples", "200",
                 "--protocols", "segmentation", "--out", str(tmp_path / "out"), "--no-cache"]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    seg = report["models"][0]["results"]["segmentation"]
    assert seg["grid"] == [8, 8] and seg["mask_size"] == [32, 32] and seg["n_train"] == 200
    assert 0.0 < seg["miou"] <= 1.0 and seg["classes"] == ["background", "foreground"]
    assert report["settings"]["segmentation"]["epochs"] == 30


def _small_labelled_folder(root, per_class=20):
    from PIL import Image

    for c, colour in (("dark", 40), ("light", 200)):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.new("L", (16, 16), color=colour + i).save(root / c / f"{i}.png")
    return root


def test_default_k_on_a_small_folder_keeps_the_ks_it_can_serve(tmp_path, capsys):
    folder = _small_labelled_folder(tmp_path / "small")
    out = tmp_path / "out"
    assert main(["evaluate", "timm:resnet18", "--data", str(folder), "--protocols", "knn", "--image-size", "32",
                 "--out", str(out), "--no-cache"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["models"][0]["results"]["knn"]["accuracy"]) == {"10", "20"}
    assert "k = 100, 200 left out" in capsys.readouterr().out.replace("\n", " ")


def test_out_is_refused_then_replaced_whole_with_overwrite(tmp_path, capsys):
    folder = _small_labelled_folder(tmp_path / "small")
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale_heatmap.png").write_bytes(b"old figure")
    args = ["evaluate", "timm:resnet18", "--data", str(folder), "--protocols", "knn", "--knn-k", "5",
            "--image-size", "32", "--out", str(out), "--no-cache"]
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err and (out / "stale_heatmap.png").read_bytes() == b"old figure"
    assert main([*args, "--overwrite"]) == 0
    assert (out / "report.json").is_file() and not (out / "stale_heatmap.png").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no temporary left behind


def test_skip_bad_files_lists_them_in_the_report(tmp_path, capsys):
    # The same data path as pretraining (open_configured): an unreadable image stops evaluate with its name,
    # and --skip-bad-files replaces it by the next readable one and lists it in report.json.
    from PIL import Image

    folder = tmp_path / "unlabelled"
    folder.mkdir()
    for i in range(12):
        Image.new("L", (16, 16), color=i * 20).save(folder / f"{i:02d}.png")
    broken = folder / "05.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    args = ["evaluate", "timm:resnet18", "--data", str(folder), "--protocols", "rankme", "--image-size", "32",
            "--no-cache"]
    assert main([*args, "--out", str(tmp_path / "strict")]) == 2
    assert str(broken) in capsys.readouterr().err
    assert main([*args, "--skip-bad-files", "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["bad_files"] == [str(broken)]
    assert report["models"][0]["results"]["rankme"]["samples"] == 12
    assert "bad_files_log" not in json.dumps(report["settings"]) + json.dumps(report["data"])
