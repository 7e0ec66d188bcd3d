"""``python run.py -m <overrides> hydra/launcher=dry_run``: a sweep's preview.

Each job is listed (its number and overrides) and its composed config goes through the same
validation a job runs before it trains (``mnistlab.config.validate``: keys, types, values, layers
against Keras's signatures, the data folder). An invalid job gets one ``error:`` line naming it and
the key. Nothing trains, no job folder is written and no MLflow run is made (the sweep callback
sees this launcher and stands aside); neither TensorFlow nor MLflow is imported. The exit code is
0 only if every job is valid.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import OverrideType
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, ListConfig, OmegaConf

from hydra_plugins.mnistlab_dry_run_launcher.config import DryRunLauncherConf  # noqa: F401  (registers it)
from mnistlab.config import validate
from mnistlab.core.errors import MnistlabError, one_line, resume_in_a_sweep
from mnistlab.core.exits import describe

STARTED = time.time()
_ABSENT = object()


class InvalidJobs(MnistlabError):
    """Some jobs of a dry run have configs that would not run."""

    exit_code = 2


class DryRunLauncher(Launcher):
    def __init__(self, **_: object) -> None:
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self._parser = OverridesParser.create(config_loader=hydra_context.config_loader)
        self._composed: dict[tuple[str, ...], DictConfig] = {}
        self._groups: dict[str, bool] = {}  # key: is it a config group

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.config is not None and self.hydra_context is not None
        started = time.perf_counter()
        results, invalid = [], []
        print(f"dry run: {len(job_overrides)} jobs (nothing is trained or recorded)", flush=True)
        for number, overrides in enumerate(job_overrides, start=initial_job_idx):
            shown = " ".join(filter_overrides(overrides)) or "(no overrides)"
            problem = self._problem(list(overrides))
            print(f"  #{number}: {shown}" + ("  INVALID" if problem else ""), flush=True)
            if problem:
                invalid.append(number)
                print(f"error: job {number} ({shown}): {problem}", file=sys.stderr, flush=True)
            results.append(
                JobReturn(
                    overrides=list(overrides), status=JobStatus.COMPLETED, _return_value=None, task_name="dry_run"
                )
            )
        root = OmegaConf.select(self.config, "root_dir", default=None) or os.getcwd()
        _remove_sweep_dir(Path(str(self.config.hydra.sweep.dir)).resolve(), Path(root).resolve())
        elapsed = time.perf_counter() - started
        if invalid:
            listed = ", ".join(map(str, invalid[:10])) + (", ..." if len(invalid) > 10 else "")
            raise InvalidJobs(f"dry run: {len(invalid)} of {len(job_overrides)} jobs are invalid (job {listed})")
        print(f"dry run: all {len(job_overrides)} jobs are valid ({elapsed:.2f} s)", flush=True)
        return results

    @contextmanager
    def _composed_config(self, overrides: list[str]) -> Iterator[DictConfig]:
        """The job's config, as Hydra composes it. Composing takes ~0.1 s, so jobs that differ only
        in plain ``key=value`` overrides of values the config has (``seed=range(100)``) share one
        composition of their other overrides, those values set on it for the job and put back after.
        ``${hydra:...}`` resolves against the sweep's own Hydra config, as Hydra set it."""
        assert self.config is not None and self.hydra_context is not None
        parsed = self._parser.parse_overrides(overrides)
        plain = [
            o
            for o in parsed
            if o.type == OverrideType.CHANGE and o.package is None and not self._is_group(o.key_or_group)
        ]
        rest = tuple(o.input_line for o in parsed if o not in plain)
        if rest not in self._composed:
            self._composed[rest] = self.hydra_context.config_loader.load_sweep_config(self.config, list(rest))
        cfg = self._composed[rest]
        if not all(self._is_value(cfg, o.key_or_group) for o in plain):  # a missing key, a mapping: Hydra's way
            yield self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
            return
        before = [(o.key_or_group, OmegaConf.select(cfg, o.key_or_group)) for o in plain]
        try:
            for override in plain:
                OmegaConf.update(cfg, override.key_or_group, override.value(), merge=False)
            yield cfg
        finally:
            for key, value in reversed(before):
                OmegaConf.update(cfg, key, value, merge=False)

    def _is_group(self, key: str) -> bool:
        assert self.hydra_context is not None
        if key not in self._groups:
            self._groups[key] = bool(self.hydra_context.config_loader.get_group_options(key))
        return self._groups[key]

    @staticmethod
    def _is_value(cfg: DictConfig, key: str) -> bool:
        """``key`` names a value the config has (not a mapping or a list, not missing)."""
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        return value is not _ABSENT and not isinstance(value, (DictConfig, ListConfig))

    def _problem(self, overrides: list[str]) -> str | None:
        """Why this job's config would not run, in one line, or None."""
        try:
            if any(o.split("=", 1)[0].lstrip("+~") == "resume" for o in overrides):
                raise resume_in_a_sweep()
            with self._composed_config(overrides) as cfg:
                validate(cfg)
        except Exception as exc:  # Hydra's composition errors and ours, each as the one line a job would print
            return one_line(describe(exc)[0])
        return None


def _remove_sweep_dir(folder: Path, root: Path) -> None:
    """Hydra's sweeper writes multirun.yaml into the sweep folder before launching: a dry run made
    that folder just now and leaves nothing behind."""
    try:
        made_now = folder.is_dir() and folder.stat().st_mtime >= STARTED - 1
        if made_now and {p.name for p in folder.iterdir()} <= {"multirun.yaml"}:
            shutil.rmtree(folder)
            for parent in folder.parents:  # multiruns/<date>, multiruns, outputs: those this made, inside root
                if parent == root or root not in parent.parents or any(parent.iterdir()):
                    break
                if parent.stat().st_mtime < STARTED - 1:
                    break
                parent.rmdir()
    except OSError:
        pass
