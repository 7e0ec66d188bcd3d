"""A Hydra app that is not mnistlab (no root_dir, no mnistlab callback) searching with mnistlab's
Optuna sweeper, as any app installed beside it may: what tests/test_search_plugin.py runs."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="plain_search")
def main(cfg: DictConfig) -> float:
    if cfg.fail:
        raise RuntimeError("this trial fails on purpose")
    value = float(cfg.x * 10 + cfg.y + cfg.get("z", 0) + cfg.get("w", 0))
    if cfg.get("pair"):  # a multi-objective search: one value per direction
        return [value, float(cfg.x + cfg.y)]
    return value


def extend(cfg: DictConfig, trial) -> None:
    """A conditional search space (hydra.sweeper.custom_search_space): w only when x is 2."""
    if trial.params["x"] == 2:
        trial.suggest_int("w", 1, 3)


if __name__ == "__main__":
    main()
