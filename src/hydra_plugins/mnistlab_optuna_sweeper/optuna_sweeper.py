"""The Hydra side of the search: setup the launcher, then hand over to ``mnistlab.sweeps.search``."""

from pathlib import Path
from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from .config import MnistlabOptunaSweeperConf  # noqa: F401  (registers the config with Hydra)


class OptunaSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        # Hydra has already instantiated the sampler (and a pruner given with _target_) here; the
        # search reads hydra.sweeper from the config instead, to offset the sampler's seed
        del settings
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        from mnistlab.sweeps import search  # Optuna: only when a search runs
        from mnistlab.sweeps import space as search_space

        assert self.config is not None and self.launcher is not None
        launcher = self.config.hydra.launcher  # joblib runs n_jobs at once, SLURM (submitit) array_parallelism
        parallel = OmegaConf.select(launcher, "n_jobs", default=None)
        settings = search.Settings.of(
            self.config.hydra.sweeper,
            launcher_jobs=parallel
            if parallel is not None
            else OmegaConf.select(launcher, "array_parallelism", default=None),
        )
        space = search_space.parse(settings.params, arguments)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")

        def launch(batch: list[list[str]], first_job: int) -> Any:
            self.validate_batch_is_legal(batch)
            return self.launcher.launch(batch, initial_job_idx=first_job)

        return search.Search(settings, space, str(self.config.root_dir), sweep_dir, launch).run()
