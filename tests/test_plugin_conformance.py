"""Hydra's own conformance suites (hydra.test_utils.launcher_common_tests) on mnistlab's launcher
plugins, as Hydra runs them on its official plugins: the same sweeps, outputs and job names a
Hydra user relies on, with Hydra's test apps and configs, not mnistlab's.

mnistlab's joblib launcher is registered as ``hydra/launcher=mnistlab_joblib`` for any Hydra app
(mnistlab's own conf/hydra/launcher/joblib.yaml selects it under the plugin's name).
"""

from __future__ import annotations

import pytest
from hydra.test_utils.launcher_common_tests import IntegrationTestSuite, LauncherTestSuite


@pytest.mark.parametrize("launcher_name, overrides", [("mnistlab_joblib", ["hydra.launcher.n_jobs=2"])])
class TestJoblibLauncher(LauncherTestSuite):
    pass


@pytest.mark.parametrize(
    "task_launcher_cfg, extra_flags",
    [({}, ["-m", "hydra/launcher=mnistlab_joblib", "hydra.launcher.n_jobs=2"])],
)
class TestJoblibLauncherIntegration(IntegrationTestSuite):
    pass
