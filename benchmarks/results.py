"""Shared by the benchmark scripts: the machine's description and RESULTS.md sections."""

from __future__ import annotations

import os
import platform
import re
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    import keras
    import mlflow
    import tensorflow as tf

    return (
        f"{cpu}, {os.cpu_count()} cores, {mem_kb / 2**20:.0f} GiB; Python {platform.python_version()}, "
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, MLflow {mlflow.__version__}"
    )


def bf16_hardware() -> str:
    """Which bfloat16 instructions this CPU has: AMX tiles, AVX512-BF16 dot products, or none."""
    flags = set(Path("/proc/cpuinfo").read_text().split())
    found = [name for flag, name in (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512-BF16")) if flag in flags]
    return " and ".join(found) if found else "none (bfloat16 is emulated)"


class Store:
    """A benchmark's throw-away mnistlab project: ``folder`` holds its mlflow.db and outputs, ``env``
    points run.py at them."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.uri = folder, f"sqlite:///{folder.resolve() / 'mlflow.db'}"
        self.env = {**os.environ, "MNISTLAB_ROOT": str(folder.resolve()), "MLFLOW_TRACKING_URI": self.uri}

    @property
    def client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.uri)

    def experiment_id(self) -> str | None:
        """The id of the runs' experiment, or None before the first run created it."""
        if not (self.folder / "mlflow.db").exists():
            return None
        experiment = self.client.get_experiment_by_name("mnistlab")
        return experiment.experiment_id if experiment else None


def write_section(name: str, title: str, body: str) -> None:
    """Replace section ``name`` of RESULTS.md, keeping the sections other scripts wrote."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = (
        RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\nWritten by the scripts in this folder.\n"
    )
    block = f"{start}\n## {title} ({time.strftime('%Y-%m-%d')})\n\n{body}\n{end}"
    if start in text:
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text)
    print(f"wrote {RESULTS}")
