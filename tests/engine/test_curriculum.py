"""Curricula: stages in the config, schedules that restart, streams that switch crops by position,
and a run that resumes inside a curriculum exactly."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sslkit.cli import main
from sslkit.config import ConfigError, load_config, to_dict as cfg_to_tree
from sslkit.data.augment import MultiCropAugmentation
from sslkit.data.builtin import load_builtin
from sslkit.data.errors import DataError
from sslkit.data.stream import AugmentedStream, CurriculumStream
from sslkit.engine.builders import build_schedules
from sslkit.engine.curriculum import final_global_size, first_global_size, resolve_stages, stage_starts
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


def _copy_with_a_broken_file(source, target, broken_index):
    """A copy of an image folder in which the file at sorted position ``broken_index`` no longer decodes."""
    import shutil

    shutil.copytree(source, target)
    files = sorted(p for p in target.rglob("*.png"))
    files[broken_index].write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return files[broken_index]


def test_paired_stage_skips_bad_files_in_pairs_and_lists_them_in_the_runs_log(tmp_path):
    # One broken file on the clean side and another on the noisy side. With data.skip_bad_files the two
    # sides skip together: every pair is still the same picture, and both files are in the one log.
    from sslkit.data.folder import read_bad_files
    from sslkit.data.noise import write_noisy_copy
    from sslkit.data.sources import open_configured
    from sslkit.engine.run import build_stream

    digits = torch.utils.data.Subset(load_builtin("digits", "train", size=16), range(40))
    digits.num_classes, digits.class_names, digits.channels = 10, [str(c) for c in range(10)], 1
    write_noisy_copy(digits, tmp_path / "clean_source", kind="gaussian", level=50)
    bad_clean = _copy_with_a_broken_file(tmp_path / "clean_source", tmp_path / "twin", 3)
    bad_noisy = _copy_with_a_broken_file(tmp_path / "clean_source", tmp_path / "noisy", 7)
    cfg = cfg_with([{"fraction": 0.5}, {"fraction": 0.5, "teacher_guidance": 1.0, "paired_data": str(tmp_path / "twin")}],
                   data={"source": str(tmp_path / "noisy"), "image_size": 16, "skip_bad_files": True,
                         "holdout_fraction": 0.0, "channels": 1})
    log = tmp_path / "bad_files.txt"
    data = open_configured(cfg.data, bad_files_log=log, seed=0)
    stream = build_stream(cfg, data, [0, 20], global_batch=4, log=lambda *_: None, bad_files_log=log)
    paired = stream.streams[1].dataset
    for i in range(len(paired)):
        item = paired[i]
        assert torch.equal(item["image"], item["clean_image"]), i
    assert set(read_bad_files(log)) == {str(bad_clean), str(bad_noisy)}
    # Without skipping, the same data stops at the first broken pair with a sentence naming the file.
    strict = cfg_with(cfg_to_tree(cfg)["curriculum"], data={**cfg_to_tree(cfg)["data"], "skip_bad_files": False})
    stream = build_stream(strict, open_configured(strict.data, seed=0), [0, 20], global_batch=4, log=lambda *_: None)
    with pytest.raises(DataError, match="twin"):
        [stream.streams[1].dataset[i] for i in range(len(digits))]


def test_curriculum_stage_data_lists_its_bad_files_in_the_runs_log(tmp_path):
    from sslkit.data.folder import read_bad_files
    from sslkit.data.noise import write_noisy_copy
    from sslkit.data.sources import open_configured
    from sslkit.engine.run import build_stream

    digits = torch.utils.data.Subset(load_builtin("digits", "train", size=16), range(30))
    digits.num_classes, digits.class_names, digits.channels = 10, [str(c) for c in range(10)], 1
    write_noisy_copy(digits, tmp_path / "source", kind="gaussian", level=50)
    bad = _copy_with_a_broken_file(tmp_path / "source", tmp_path / "stage", 5)
    cfg = cfg_with([{"fraction": 0.5}, {"fraction": 0.5, "data": str(tmp_path / "stage")}],
                   data={"source": str(tmp_path / "source"), "image_size": 16, "skip_bad_files": True, "channels": 1})
    log = tmp_path / "bad_files.txt"
    stream = build_stream(cfg, open_configured(cfg.data, bad_files_log=log, seed=0), [0, 20], global_batch=4,
                          log=lambda *_: None, bad_files_log=log)
    stage = stream.streams[1].dataset
    images = [stage[i] for i in range(len(stage))]
    assert len(images) == 30 and read_bad_files(log) == [str(bad)]


def test_stages_are_resolved_once_and_every_reader_agrees():
    # A last stage at its own size (24 px) that is neither the first stage's nor the crops' (32 px): the
    # backbone grid, the views, the FLOP count, the kNN monitor and the export all read resolve_stages.
    from sslkit.engine.builders import build_augmentation, build_backbone
    from sslkit.engine.flops import stages_from_config

    cfg = cfg_with([{"fraction": 0.5, "global_size": 16, "local_size": 8}, {"fraction": 0.25},
                    {"fraction": 0.25, "global_size": 24}])
    stages = resolve_stages(cfg)
    assert [(s.global_size, s.local_size) for s in stages] == [(16, 8), (32, 16), (24, 16)]
    assert first_global_size(cfg) == 16 and final_global_size(cfg) == 24
    assert stages_from_config(cfg) == [(0.5, 16, 8), (0.25, 32, 16), (0.25, 24, 16)]
    assert stage_starts(cfg, 40) == [0, 20, 30]
    assert build_backbone(cfg, 1).config.img_size == 16
    views = build_augmentation(cfg, 1, (0.5,), (0.5,), stages[2])(torch.rand(1, 40, 40))
    assert views["global"][0].shape[-1] == 24 and views["local"][0].shape[-1] == 16
    # Without a curriculum: one stage at the crops.
    plain = resolve_stages(load_config({"crops": {"global_size": 32, "local_size": 16}}))
    assert [(s.fraction, s.global_size, s.local_size) for s in plain] == [(1.0, 32, 16)]
