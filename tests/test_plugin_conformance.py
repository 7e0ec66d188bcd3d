"""Hydra's own conformance suites (hydra.test_utils.launcher_common_tests) on mnistlab's launcher
plugins, as Hydra runs them on its official plugins: the same sweeps, outputs and job names a
Hydra user relies on, with Hydra's test apps and configs, not mnistlab's.

mnistlab's joblib launcher is registered as ``hydra/launcher=mnistlab_joblib`` for any Hydra app
(mnistlab's own conf/hydra/launcher/joblib.yaml selects it under the plugin's name).
"""

from __future__ import annotations

import pytest
from hydra import version
from hydra.test_utils.launcher_common_tests import IntegrationTestSuite, LauncherTestSuite


@pytest.fixture(autouse=True)
def unspecified_version_base():
    """The suites' apps name no version_base, so Hydra's 1.1 defaults apply (a job chdirs into its
    folder); a test before them in this process (compose with version_base="1.3") left 1.3 set."""
    base = version.VersionBase.instance()
    saved, base.version_base = base.version_base, version._UNSPECIFIED_
    yield
    base.version_base = saved


@pytest.mark.parametrize("launcher_name, overrides", [("mnistlab_joblib", ["hydra.launcher.n_jobs=2"])])
class TestJoblibLauncher(LauncherTestSuite):
    pass


@pytest.mark.parametrize(
    "task_launcher_cfg, extra_flags",
    [({}, ["-m", "hydra/launcher=mnistlab_joblib", "hydra.launcher.n_jobs=2"])],
)
class TestJoblibLauncherIntegration(IntegrationTestSuite):
    pass
