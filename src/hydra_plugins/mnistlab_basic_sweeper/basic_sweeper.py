"""Hydra's basic sweeper (the grid of ``-m a=1,2 b=x,y``), with one change: under the dry-run
launcher, the jobs' configs are not composed twice. Hydra's sweeper composes every job before
launching (``validate_batch_is_legal``, ~0.1 s a job) and stops at the first that fails; the dry
run composes and validates each job itself, reporting every invalid one, so a preview of 100 jobs
takes seconds. conf/hydra/sweeper/basic.yaml selects it in place of Hydra's own.
"""

from collections.abc import Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper as HydraBasicSweeper

from mnistlab.sweeps.tracker import is_dry_run


class BasicSweeper(HydraBasicSweeper):
    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        if self.config is not None and is_dry_run(self.config):
            return  # the dry-run launcher composes and validates each job, and names each that fails
        super().validate_batch_is_legal(batch)
