"""The dry-run launcher's config, registered as ``hydra/launcher: dry_run`` (no keys of its own).
No ``from __future__`` here: Hydra's plugin scan imports this module where dataclasses cannot
resolve string annotations."""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore


@dataclass
class DryRunLauncherConf:
    _target_: str = "hydra_plugins.mnistlab_dry_run_launcher.dry_run_launcher.DryRunLauncher"


ConfigStore.instance().store(group="hydra/launcher", name="dry_run", node=DryRunLauncherConf, provider="mnistlab")
