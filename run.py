"""Train and evaluate one experiment (or a sweep with -m); see README.md.

python run.py model=cnn optimizer=sgd
python run.py --cfg job          # the composed config, without training
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from mnistlab.app import task
from mnistlab.core.exits import exit_now


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    return task.task(cfg)


if __name__ == "__main__":
    task.entry(main, root_dir=Path(__file__).parent)  # a failure exits from here, with its code
    exit_now()  # done: skip the interpreter's teardown (1-2 s of freeing what TensorFlow loaded)
