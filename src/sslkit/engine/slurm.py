"""SLURM preemption: checkpoint on the warning signal, requeue the job, resume exactly when it restarts.

A job submitted with ``#SBATCH --signal=USR1@120`` (and ``--requeue``) receives SIGUSR1 two minutes
before its time limit or preemption. Lightning's own handler for it saves a checkpoint from inside
the signal handler — at any instant, also in the middle of an optimiser step — which is not a state
sslkit's exact-resume stream can continue bit for bit. So sslkit turns Lightning's handler off
(``SLURMEnvironment(auto_requeue=False)``) and treats SIGUSR1 like SIGTERM (engine/interrupt.py):
at the next step boundary it writes ``last.ckpt``, then calls ``scontrol requeue JOB`` and exits
with status 138 (128 + SIGUSR1).

The requeued job runs the same batch script, that is the same ``sslkit pretrain --out RUN ...``
line without ``--resume``. It restarts with ``SLURM_RESTART_COUNT`` ≥ 1 under the same job id, which
the run recorded in ``config.yaml``; :func:`requeued_restart` recognises that and the run resumes
(its configuration is still compared with the saved one, engine/resume.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Callable, Optional

import yaml

__all__ = ["REQUEUE_SIGNAL", "cluster_plugins", "requeue", "requeued_restart", "slurm_job_id", "under_slurm"]

REQUEUE_SIGNAL = signal.SIGUSR1


def under_slurm() -> bool:
    """A process started by ``srun``/``sbatch`` (Lightning's rule: ``SLURM_NTASKS`` set, not an interactive job)."""
    return "SLURM_NTASKS" in os.environ and os.environ.get("SLURM_JOB_NAME") not in ("bash", "interactive")


def slurm_job_id() -> Optional[str]:
    """The id ``scontrol requeue`` takes: ``ARRAYJOB_TASK`` for an array task, else ``SLURM_JOB_ID``."""
    if not under_slurm():
        return None
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array is not None and os.environ.get("SLURM_ARRAY_TASK_ID") is not None:
        return f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


def cluster_plugins() -> list:
    """Lightning plugins for the cluster: under SLURM, its environment without Lightning's own requeue."""
    if not under_slurm():
        return []
    from lightning.fabric.plugins.environments import SLURMEnvironment

    return [SLURMEnvironment(auto_requeue=False)]


def requeue(job_id: str, log: Callable[[str], None] = print) -> bool:
    """``scontrol requeue JOB``; False (with the reason logged) when it cannot be done."""
    try:
        status = subprocess.call(["scontrol", "requeue", job_id])
    except FileNotFoundError:
        log("cannot requeue: 'scontrol' is not on PATH; resubmit the job with --resume")
        return False
    if status != 0:
        log(f"'scontrol requeue {job_id}' failed with status {status}; resubmit the job with --resume")
    return status == 0


def requeued_restart(out: Path) -> bool:
    """Whether this process is the requeued restart of the SLURM job that started the run in ``out``."""
    job = slurm_job_id()
    if job is None or int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) < 1:
        return False
    config = Path(out) / "config.yaml"
    try:
        saved = yaml.safe_load(config.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(saved, dict) and (saved.get("resolved") or {}).get("slurm_job_id") == job
