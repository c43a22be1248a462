"""FSDP in the engine: the strategy built from ``cfg.trainer``, and a sharded DINOv2 step that equals an unsharded one.

The 2-process check runs this file as a script on two gloo workers (``__main__`` below): each wraps a
small DINOv2 with :class:`SSLFSDPStrategy`'s own wrapping (full_shard, then shard_grad_op), and both
take the *same* batch, so the FSDP-averaged gradient equals the one-process gradient of that batch. Three steps of
forward → backward → sharded per-sub-module clipping → AdamW → EMA on the shards must then give the
same student and teacher as the same three steps without FSDP, gathered with ``full_backbone``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sslkit.config import ConfigError, TrainerConfig
from sslkit.engine.strategy import FSDP_SHARDING, SSLFSDPStrategy, build_strategy, clip_grad_norm_

CLIP = 0.05  # far below the gradient norms, so every step is clipped and a wrong norm shows


def test_string_strategies_pass_through_unchanged():
    for name in ("auto", "ddp", "ddp_spawn", "deepspeed"):
        assert build_strategy(TrainerConfig(strategy=name)) == name


@pytest.mark.parametrize("sharding", sorted(FSDP_SHARDING))
def test_fsdp_strategy_is_configured(sharding, monkeypatch):
    import torch
    from timm.models.vision_transformer import Block
    from torch.distributed.fsdp import ShardingStrategy
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    from sslkit.nn.heads import DINOHead, ProjectionMLP
    from sslkit.nn.mae_decoder import MAEDecoder
    from sslkit.nn.vit import ViT

    # Built for GPUs (hybrid sharding is refused on the CPU, see below); nothing touches CUDA here, but
    # the strategy refuses an accelerator the machine lacks, so this machine pretends to have one GPU.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    strategy = build_strategy(TrainerConfig(strategy="fsdp", fsdp_sharding=sharding, accelerator="cuda"))
    assert isinstance(strategy, SSLFSDPStrategy)
    assert strategy.sharding_strategy == ShardingStrategy[FSDP_SHARDING[sharding]]
    policy = strategy.kwargs["auto_wrap_policy"]
    assert isinstance(policy, ModuleWrapPolicy)
    assert {Block, ViT, DINOHead, ProjectionMLP, MAEDecoder} <= set(policy._module_classes)
    assert strategy.kwargs["use_orig_params"] is True
    assert strategy._state_dict_type == "full"


def test_lightning_accepts_it_on_the_cpu():
    # Lightning refuses the plain FSDPStrategy without CUDA (an exact-type check); the subclass passes.
    import lightning as L

    trainer = L.Trainer(accelerator="cpu", devices=1, strategy=build_strategy(TrainerConfig(strategy="fsdp")),
                        logger=False, enable_checkpointing=False, enable_progress_bar=False)
    assert isinstance(trainer.strategy, SSLFSDPStrategy)


def test_bad_sharding_is_refused_with_the_key_and_the_choices():
    with pytest.raises(ConfigError) as info:
        build_strategy(TrainerConfig(strategy="fsdp", fsdp_sharding="zero3"))
    message = str(info.value)
    assert "trainer.fsdp_sharding" in message and "'zero3'" in message
    assert all(choice in message for choice in FSDP_SHARDING)
    assert message.count(".") <= 2 and "\n" not in message  # one sentence


def test_hybrid_sharding_is_refused_on_the_cpu():
    # FSDP derives hybrid groups from the accelerator count (1 on the CPU): each rank would train alone.
    with pytest.raises(ConfigError, match="hybrid_shard.*GPUs"):
        build_strategy(TrainerConfig(strategy="fsdp", fsdp_sharding="hybrid_shard", accelerator="cpu"))
    assert isinstance(build_strategy(TrainerConfig(strategy="fsdp", fsdp_sharding="shard_grad_op")), SSLFSDPStrategy)


def test_unsharded_clipping_is_torchs():
    torch.manual_seed(0)
    a, b = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    b.load_state_dict(a.state_dict())
    for m in (a, b):
        m(torch.randn(5, 4, generator=torch.Generator().manual_seed(1))).pow(2).sum().backward()
    norm_a = clip_grad_norm_(a.parameters(), 0.1)
    norm_b = torch.nn.utils.clip_grad_norm_(b.parameters(), 0.1)
    assert torch.equal(norm_a, norm_b)
    assert all(torch.equal(p.grad, q.grad) for p, q in zip(a.parameters(), b.parameters()))


# ----------------------------------------------------------------------------- 2 gloo workers

def _tiny_dinov2():
    from sslkit.methods.dinov2 import DINOv2, DINOv2LossConfig
    from sslkit.nn.heads import DINOHead
    from sslkit.nn.vit import ViT, ViTConfig

    torch.manual_seed(0)
    backbone = ViT(ViTConfig(img_size=16, patch_size=4, in_chans=1, embed_dim=32, depth=2, num_heads=2,
                             layerscale_init=None))
    return DINOv2(backbone, DINOHead(32, 64, hidden_dim=48, bottleneck_dim=16),
                  DINOv2LossConfig(n_global=2, n_local=2), ibot_head=DINOHead(32, 64, hidden_dim=48, bottleneck_dim=16))


def _batch(step: int) -> dict:
    g = torch.Generator().manual_seed(100 + step)
    masks = torch.rand(8, 16, generator=g) < 0.4
    masks[0::2, 0] = True
    return {"global_crops": torch.randn(8, 1, 16, 16, generator=g),
            "local_crops": torch.randn(8, 1, 8, 8, generator=g), "masks": masks}


def _train(method, group_of, steps: int = 3) -> list[dict]:
    """The engine's step order: forward → backward → clip per student sub-module → AdamW → EMA."""
    optimizer = torch.optim.AdamW(method.student.parameters(), lr=1e-3, weight_decay=0.04, foreach=True)
    log = []
    for step in range(steps):
        out = method(_batch(step), teacher_temp=0.05)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        norms = {name: float(clip_grad_norm_(sub.parameters(), CLIP, group=group_of(sub)))
                 for name, sub in method.student.items()}
        optimizer.step()
        method.update_teacher(0.9)
        log.append({"loss": float(out["loss"].detach()), "norms": norms})
    return log


SHARDINGS = ("full_shard", "shard_grad_op")  # hybrid_shard needs GPUs (refused on the CPU)


def _worker(rank: int, out_dir: str) -> None:
    import torch.distributed as dist
    from lightning.fabric.plugins.environments import LightningEnvironment
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    from sslkit.engine.strategy import full_backbone, sharding_group

    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    environment = LightningEnvironment()
    environment.set_world_size(2)
    environment.set_global_rank(rank)
    results = {}
    for sharding in SHARDINGS:
        strategy = build_strategy(TrainerConfig(strategy="fsdp", fsdp_sharding=sharding))
        strategy.cluster_environment = environment
        strategy.parallel_devices = [torch.device("cpu")] * 2

        holder = torch.nn.Module()  # stands for the LightningModule the strategy receives
        holder.method = _tiny_dinov2().train()
        strategy._setup_model(holder)
        method = holder.method
        layout = {}
        for net in ("student", "teacher"):
            for name, root in method.get_submodule(net).items():
                assert isinstance(root, FSDP), (net, name)
                layout[f"{net}.{name}"] = [unit.module.__class__.__name__ for unit in FSDP.fsdp_modules(root)]
                layout[f"{net}.{name}.numel"] = int(root._handle.flat_param._unpadded_unsharded_size.numel())
        # Each rank's local (one-shard) norm of every sub-module's gradient, before clipping.
        local_norms = []

        def group_of(sub):
            grads = [p.grad for p in sub.parameters() if p.grad is not None]
            local_norms.append(float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0)
            return sharding_group(sub)

        log = _train(method, group_of)
        full = {"teacher": full_backbone(method.teacher["backbone"]).state_dict(),
                "student": full_backbone(method.student["backbone"]).state_dict()}
        results[sharding] = {"log": log, "full": full, "layout": layout}
        (Path(out_dir) / f"local_norms_{sharding}_{rank}.json").write_text(json.dumps(local_norms))
    if rank == 0:
        torch.save(results, Path(out_dir) / "rank0.pt")
    dist.destroy_process_group()


@pytest.mark.slow
def test_sharded_steps_equal_unsharded_steps(tmp_path):
    import socket

    with socket.socket() as sock:  # a free port for the workers' rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, __file__, str(rank), str(tmp_path)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err[-3000:]
    results = torch.load(tmp_path / "rank0.pt", weights_only=True)

    reference = _tiny_dinov2().train()
    expected = _train(reference, lambda sub: None)
    for sharding in SHARDINGS:
        sharded = results[sharding]
        for got, want in zip(sharded["log"], expected):
            assert got["loss"] == pytest.approx(want["loss"], abs=1e-5), sharding
            for name in want["norms"]:  # the global norm of each sub-module's gradient, on every step
                assert got["norms"][name] == pytest.approx(want["norms"][name], rel=1e-5), (sharding, name)
        for net in ("teacher", "student"):
            state, ref = sharded["full"][net], reference.get_submodule(f"{net}.backbone").state_dict()
            assert set(state) == set(ref)
            worst = max((state[k] - ref[k]).abs().max().item() for k in ref)
            assert worst < 1e-5, (sharding, net, worst)

        # The wrapping: every block is its own unit inside its backbone, and each student unit has a
        # teacher twin of the same size (the EMA pairs their local shards element for element).
        layout = sharded["layout"]
        assert layout["student.backbone"] == layout["teacher.backbone"] == ["ViT", "Block", "Block"]
        for name in ("backbone", "dino_head", "ibot_head"):
            assert layout[f"student.{name}.numel"] == layout[f"teacher.{name}.numel"] > 0

        # Each rank held a disjoint piece of the gradient: the local norms are the legs of the global
        # one (a local clip would have scaled the two pieces of one gradient by different factors).
        local = [json.loads((tmp_path / f"local_norms_{sharding}_{rank}.json").read_text()) for rank in range(2)]
        global_backbone_norm = expected[0]["norms"]["backbone"]
        assert min(local[0][0], local[1][0]) > 0
        assert max(local[0][0], local[1][0]) < global_backbone_norm * (1 - 1e-3)
        assert (local[0][0] ** 2 + local[1][0] ** 2) ** 0.5 == pytest.approx(global_backbone_norm, rel=1e-5)

if __name__ == "__main__":
    _worker(int(sys.argv[1]), sys.argv[2])
