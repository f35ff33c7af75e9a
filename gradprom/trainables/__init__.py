"""Trials, one pipeline each (`task_driven`, `r2c_gan`): build, step, epoch, evaluate, checkpoint.

`train_trial(config, report)` imports no Ray and runs the config's pipeline; `gradprom.trainables.ray_trial`
glues it into Ray Tune and Ray Train. Importing this package registers the built-in pipelines.
"""

from gradprom.trainables import r2c_gan as _r2c_gan  # noqa: F401  (registers "r2c_gan")
from gradprom.trainables import task_driven as _task_driven  # noqa: F401  (registers "task_driven")
from gradprom.trainables.config import TrialConfig
from gradprom.trainables.pipeline import PIPELINES, pipeline_info, pipeline_names, preflight, train_trial

__all__ = ["PIPELINES", "TrialConfig", "pipeline_info", "pipeline_names", "preflight", "train_trial"]
