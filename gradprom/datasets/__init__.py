"""Datasets (clean images + task targets) and degradations (applied on the fly, on the device).

`get_dataset("synthetic", task="segmentation")` builds a dataset by name; `parse_degradation(
"gaussian:sigma=0.15")` turns a CLI spec into a callable corruption. Importing this package
registers the built-ins.
"""

from gradprom.datasets import camus as _camus  # noqa: F401  (registers "camus")
from gradprom.datasets import covid_ct as _covid_ct  # noqa: F401  (registers "covid_ct")
from gradprom.datasets import folder as _folder  # noqa: F401  (registers "folder")
from gradprom.datasets import isic2018 as _isic2018  # noqa: F401  (registers "isic2018")
from gradprom.datasets import lizard as _lizard  # noqa: F401  (registers "lizard")
from gradprom.datasets import qata_cov19 as _qata_cov19  # noqa: F401  (registers "qata_cov19")
from gradprom.datasets import synthetic as _synthetic  # noqa: F401  (registers "synthetic")
from gradprom.datasets import unpaired as _unpaired  # noqa: F401  (registers "r2c_release")
from gradprom.datasets.base import (
    DATASETS,
    TASKS,
    Split,
    TaskData,
    dataset_info,
    dataset_names,
    dataset_options_json,
    dataset_options_of,
    get_dataset,
    orientation_free,
    parse_dataset_options,
    register_dataset,
)
from gradprom.datasets.degradations import (
    DEGRADATIONS,
    Degradation,
    degradation_names,
    get_degradation,
    parse_degradation,
)
from gradprom.datasets.disk import split_sizes

__all__ = [
    "DATASETS",
    "DEGRADATIONS",
    "TASKS",
    "Degradation",
    "Split",
    "TaskData",
    "dataset_info",
    "dataset_names",
    "dataset_options_of",
    "degradation_names",
    "get_dataset",
    "orientation_free",
    "get_degradation",
    "dataset_options_json",
    "parse_dataset_options",
    "parse_degradation",
    "register_dataset",
    "split_sizes",
]
