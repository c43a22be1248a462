"""Curricula: stages in the config, schedules that restart, streams that switch crops by position,
and a run that resumes inside a curriculum exactly."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sslkit.cli import main
from sslkit.config import ConfigError, load_config
from sslkit.data.augment import MultiCropAugmentation
from sslkit.data.builtin import load_builtin
from sslkit.data.stream import AugmentedStream, CurriculumStream
from sslkit.engine.builders import build_schedules, stage_starts
from tiny_overrides import tiny_dinov2

FAST = [{"fraction": 0.75, "global_size": 16, "local_size": 8},
        {"fraction": 0.25, "restart_schedules": True}]


def cfg_with(curriculum, **over):
    tree = {"crops": {"global_size": 32, "local_size": 16}, "model": {"patch_size": 4},
            "optim": {"epochs": 4, "iters_per_epoch": 10, "warmup_epochs": 1},
            "dinov2": {"warmup_teacher_temp_epochs": 2}, "curriculum": curriculum, **over}
    return load_config(tree)


def test_stages_parse_and_bad_stages_are_refused():
    cfg = cfg_with(FAST)
    assert [s.fraction for s in cfg.curriculum] == [0.75, 0.25]
    assert cfg.curriculum[1].restart_schedules and cfg.curriculum[0].global_size == 16
    with pytest.raises(ConfigError, match="must sum to 1"):
        cfg_with([{"fraction": 0.5}, {"fraction": 0.4}])
    with pytest.raises(ConfigError, match=r"curriculum\[0\].global_size' = 18 must be a positive multiple"):
        cfg_with([{"fraction": 1.0, "global_size": 18}])
    with pytest.raises(ConfigError, match=r"Unknown config key 'curriculum\[1\].sizee'"):
        cfg_with([{"fraction": 0.5}, {"fraction": 0.5, "sizee": 3}])


def test_restarting_stage_starts_every_schedule_afresh():
    cfg = cfg_with(FAST)
    sched = build_schedules(cfg, iters_per_epoch=10, global_batch=64)
    assert stage_starts(cfg, 40) == [0, 30] and sched.total_iters == 40
    first, boundary = sched.at(0), sched.at(30)
    # Spec check 4 (fast-dinov2.md): after the switch, lr(0) = 0, teacher temperature back to its start.
    assert boundary["stage"] == 1 and first["stage"] == 0
    assert boundary["lr"] == 0.0 and boundary["teacher_temp"] == pytest.approx(0.04)
    assert boundary["momentum"] == pytest.approx(0.992) and boundary["last_layer_lr_multiplier"] == 0.0
    assert sched.at(29)["lr"] > 0 and sched.at(29)["teacher_temp"] > 0.04
    assert sched.starts_fresh(30) and not sched.starts_fresh(29) and not sched.starts_fresh(31)
    # The restarted stage is a fresh 10-iteration run: its warm-up (1 epoch = 10 its) spans it all.
    assert sched.at(35)["lr"] == pytest.approx(sched.stages[1][1].at(5)["lr"])
    # A stage that does not restart continues the whole-run schedules.
    cont = build_schedules(cfg_with([{"fraction": 0.75, "global_size": 16}, {"fraction": 0.25}]), 10, 64)
    whole = build_schedules(cfg_with([]), 10, 64)
    assert cont.at(31)["lr"] == whole.at(31)["lr"] and not cont.starts_fresh(30)


def test_stream_switches_crop_size_at_the_stage_boundary():
    data = load_builtin("digits", "train", size=16)
    small = AugmentedStream(data, MultiCropAugmentation(8, 4, n_local=1, channels=1, mean=(0.5,), std=(0.25,)))
    large = AugmentedStream(data, MultiCropAugmentation(16, 8, n_local=1, channels=1, mean=(0.5,), std=(0.25,)))
    stream = CurriculumStream([small, large], [0, 100])
    assert stream[99]["image"]["global"][0].shape[-1] == 8
    assert stream[100]["image"]["global"][0].shape[-1] == 16
    # Same position, same sample and crops, whichever object serves it.
    assert torch.equal(stream[150]["image"]["global"][0], large[150]["image"]["global"][0])


RECIPE = str(Path(__file__).resolve().parents[2] / "recipes" / "dinov2-tiny.yaml")
TINY = tiny_dinov2({"dinov2.warmup_teacher_temp_epochs": 0.5, "trainer.checkpoint_every_n_steps": 2,
                    "monitor.count_flops": "true",
                    "curriculum": "[{fraction: 0.5, global_size: 8, local_size: 4}, "
                                  "{fraction: 0.5, restart_schedules: true, noise_patch: 0.5}]"})


@pytest.mark.slow
def test_curriculum_run_switches_stage_and_resumes_inside_it(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(["pretrain", "--recipe", RECIPE, "--data", "digits", "--out", str(straight), *TINY]) == 0
    rows = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if "train/loss" in r]
    assert [r["schedule/stage"] for r in train] == [0.0] * 4 + [1.0] * 4
    assert train[4]["schedule/lr"] == 0.0 and train[4]["schedule/teacher_temp"] == pytest.approx(0.04)
    # FLOPs: a running total, cheaper per step in the low-resolution stage, ending at the planned total.
    flops = [r["train/flops"] for r in train]
    steps_cost = [b - a for a, b in zip([0.0] + flops[:-1], flops)]
    assert steps_cost[0] < 0.5 * steps_cost[-1]
    report = json.loads((straight / "report.json").read_text())
    assert flops[-1] == pytest.approx(report["flops"]["total_planned"], rel=1e-9)
    # Evaluation runs the model at the resolution the run ended at, not at the first stage's grid.
    from sslkit.eval.models import load_encoder

    encoder = load_encoder(str(straight))
    assert encoder.module.config.img_size == 8 and encoder.image_size == 16
    # Stop inside stage 2, resume: the same weights as the uninterrupted run.
    assert main(["pretrain", "--recipe", RECIPE, "--data", "digits", "--out", str(split), *TINY,
                 "trainer.max_steps=6"]) == 0
    assert main(["pretrain", "--out", str(split), "--resume", "trainer.max_steps=null"]) == 0
    wa, wb = load_file(straight / "backbone.safetensors"), load_file(split / "backbone.safetensors")
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)


def test_paired_stage_keeps_a_labelled_folder_and_its_copy_aligned_after_the_holdout(tmp_path):
    # A labelled noisy folder loses 10 % of its images to the kNN hold-out; its denoised copy (opened
    # whole) must lose the same ones, so item i of both is the same picture. Here the "copy" is an
    # exact duplicate, so every pair must match pixel for pixel.
    import shutil

    from sslkit.data.noise import write_noisy_copy
    from sslkit.data.sources import open_data
    from sslkit.engine.run import build_stream

    digits = torch.utils.data.Subset(load_builtin("digits", "train", size=16), range(60))
    digits.num_classes, digits.class_names, digits.channels = 10, [str(c) for c in range(10)], 1
    write_noisy_copy(digits, tmp_path / "noisy", kind="gaussian", level=50)
    shutil.copytree(tmp_path / "noisy", tmp_path / "twin")
    cfg = cfg_with([{"fraction": 0.5}, {"fraction": 0.5, "teacher_guidance": 1.0, "paired_data": str(tmp_path / "twin")}],
                   data={"source": str(tmp_path / "noisy"), "image_size": 16})
    data = open_data(str(tmp_path / "noisy"), image_size=16, holdout_fraction=cfg.data.holdout_fraction, seed=0)
    assert len(data.train) < 60  # the hold-out happened
    stream = build_stream(cfg, data, [0, 20], global_batch=4, log=lambda *_: None)
    paired = stream.streams[1].dataset
    assert len(paired) == len(data.train)
    for i in range(len(paired)):
        item = paired[i]
        assert torch.equal(item["image"], item["clean_image"]), i
