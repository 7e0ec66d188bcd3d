"""The launcher's config, registered as ``hydra/launcher: mnistlab_joblib`` for any Hydra app:
hydra-joblib-launcher's keys (only ``n_jobs`` is read), this launcher as the target. mnistlab's
conf/hydra/launcher/joblib.yaml selects it under the plugin's own name. No ``from __future__``
here: Hydra's plugin scan imports this module where dataclasses cannot resolve string annotations."""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

from hydra_plugins.hydra_joblib_launcher.config import JobLibLauncherConf


@dataclass
class MnistlabJoblibLauncherConf(JobLibLauncherConf):
    _target_: str = "hydra_plugins.mnistlab_joblib_launcher.joblib_launcher.JoblibLauncher"


ConfigStore.instance().store(
    group="hydra/launcher", name="mnistlab_joblib", node=MnistlabJoblibLauncherConf, provider="mnistlab"
)
