"""The Hydra side of the search: setup the launcher, then hand over to ``mnistlab.sweeps.search``."""

import os
from pathlib import Path
from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from .config import MnistlabOptunaSweeperConf  # noqa: F401  (registers the config with Hydra)


class OptunaSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        # the search reads hydra.sweeper from the config instead (the sampler's seed is offset,
        # a GridSampler gets its grid): Hydra does not instantiate them (_recursive_: false)
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
        from mnistlab.sweeps import space as search_space
        from mnistlab.sweeps.tracker import is_dry_run

        assert self.config is not None and self.launcher is not None
        if is_dry_run(self.config):  # the space as Optuna will read it; the study is not opened
            params = OmegaConf.to_container(self.config.hydra.sweeper, resolve=True).get("params")
            custom = OmegaConf.select(self.config, "hydra.sweeper.custom_search_space", default=None)
            space = search_space.parse(params, arguments, custom=custom is not None)
            print("dry run: the search space (nothing is trained, the study is not opened)")
            for line in space.describe() + ([f"{custom} (custom_search_space)"] if custom else []):
                print(f"  {line}")
            return None
        from mnistlab.sweeps import search  # Optuna: only when a search runs

        launcher = self.config.hydra.launcher  # joblib runs n_jobs at once, SLURM (submitit) array_parallelism
        parallel = OmegaConf.select(launcher, "n_jobs", default=None)
        settings = search.Settings.of(
            self.config.hydra.sweeper,
            launcher_jobs=parallel
            if parallel is not None
            else OmegaConf.select(launcher, "array_parallelism", default=None),
        )
        space = search_space.parse(settings.params, arguments, custom=settings.custom_search_space is not None)
        extend = None
        if settings.custom_search_space:
            suggest = search.custom_search_space(settings.custom_search_space)

            def extend(trial: Any) -> None:
                suggest(self.config, trial)

        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")

        def launch(batch: list[list[str]], first_job: int) -> Any:
            self.validate_batch_is_legal(batch)
            return self.launcher.launch(batch, initial_job_idx=first_job)

        # root_dir is mnistlab's key; another Hydra app's search keeps its study in its working directory
        root_dir = OmegaConf.select(self.config, "root_dir", default=None) or os.getcwd()
        return search.Search(settings, space, str(root_dir), sweep_dir, launch, extend).run()
