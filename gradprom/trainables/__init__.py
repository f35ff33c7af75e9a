"""One trial: train enhancer + recognizer with a gradient strategy, evaluate, report, checkpoint.

`train_trial(config, report)` imports no Ray; `gradprom.trainables.ray_trial` glues it into Ray Tune
and Ray Train.
"""

from gradprom.trainables.config import TrialConfig
from gradprom.trainables.loop import train_trial

__all__ = ["TrialConfig", "train_trial"]
