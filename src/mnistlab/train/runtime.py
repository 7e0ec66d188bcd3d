"""The process a run trains in: seeds, TensorFlow's thread pools, Keras's precision policy."""

from __future__ import annotations

import logging
import os
from collections.abc import Collection
from pathlib import Path

import keras
import tensorflow as tf

log = logging.getLogger(__name__)
#: CPU flags of native bfloat16 arithmetic (Linux /proc/cpuinfo names)
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
BF16_GPU_CAPABILITY = (8, 0)  # NVIDIA Ampere and later compute in bfloat16


def seed_everything(seed: int) -> None:
    """A clean Keras state (a parallel launcher may reuse this process for the next job), then
    Python, NumPy and TensorFlow generators: weights, shuffling and dropout repeat exactly."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)


def cpu_cores() -> int:
    """Cores this process may use (its CPU affinity, e.g. a container's or SLURM's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def resolve_threads(threads: str | int, parallel_jobs: int) -> int:
    """``auto``: $OMP_NUM_THREADS when set (Ray sets it to a task's num_cpus, many SLURM sites to
    the job's cores), else the cores shared out between the jobs that run at once, at least one each.
    ``parallel_jobs`` counts as joblib's n_jobs does: -1 is one job per core, -2 all but one."""
    if threads != "auto":
        return int(threads)
    cores = cpu_cores()
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) > 0:
        return min(int(omp), cores)
    jobs = parallel_jobs if parallel_jobs > 0 else cores + 1 + parallel_jobs
    return max(1, cores // max(1, jobs))


def find_devices() -> list:
    """The devices TensorFlow sees. No op runs: the thread pools can still be sized afterwards."""
    return tf.config.list_physical_devices()


def set_threads(threads: int) -> None:
    """TensorFlow's thread pools; possible only before the first op of the process runs.

    A launcher that reuses its worker processes (joblib) brings the next job here after
    TensorFlow started: the pools are then already sized for this sweep and stay as they are.
    """
    if tf.config.threading.get_intra_op_parallelism_threads() == threads:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        log.warning(
            "TensorFlow already started in this process; its thread pools keep their size (%d threads)",
            tf.config.threading.get_intra_op_parallelism_threads(),
        )


def resolve_precision(
    precision: str,
    model_choice: str = "mixed_bfloat16",
    cpu_flags: Collection[str] | None = None,
    gpu_capabilities: Collection[tuple[int, int]] | None = None,
) -> str:
    """``auto``: ``model_choice`` (the model's ``auto_precision``) where the hardware computes
    bfloat16 natively, float32 elsewhere: emulated, bfloat16 gains nothing. A model whose layers
    are too small to gain (tiny_cnn ran slower in bfloat16) chooses float32 everywhere.
    Training runs on the first GPU when TensorFlow sees one (bfloat16 from compute capability 8.0,
    Ampere), else on the CPU (AMX or AVX512-BF16). ``cpu_flags`` and ``gpu_capabilities``: this
    machine's by default (/proc/cpuinfo, TensorFlow's device details)."""
    if precision != "auto":
        return precision
    return model_choice if native_bfloat16(cpu_flags, gpu_capabilities) else "float32"


def native_bfloat16(
    cpu_flags: Collection[str] | None = None, gpu_capabilities: Collection[tuple[int, int]] | None = None
) -> bool:
    """Whether the device that trains computes bfloat16 in hardware."""
    if gpu_capabilities is None:
        gpu_capabilities = [
            tf.config.experimental.get_device_details(gpu).get("compute_capability") or (0, 0)
            for gpu in tf.config.list_physical_devices("GPU")
        ]
    if gpu_capabilities:
        return tuple(next(iter(gpu_capabilities))) >= BF16_GPU_CAPABILITY
    if cpu_flags is None:
        try:
            cpu_flags = set(Path("/proc/cpuinfo").read_text().split())
        except OSError:  # not Linux: no way to tell
            cpu_flags = set()
    return any(flag in cpu_flags for flag in BF16_CPU_FLAGS)


def set_precision(policy: str) -> None:
    """Keras's global dtype policy, set for every run (a reused worker keeps the last one)."""
    keras.mixed_precision.set_global_policy(policy)
