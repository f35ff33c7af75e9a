"""Optuna inside Ray Tune, multi-objective, telling Optuna the truth about each trial's end.

Ray's OptunaSearch tells Optuna "complete" for any trial that reported a value, even one a scheduler
stopped after a few epochs or one that crashed later, and reaching into it means its private attributes.
gradprom's `StudySearcher` is a Tune `Searcher` over Optuna's public ask/tell: only trials that ran the full
budget are COMPLETE; early-stopped ones are PRUNED and errored ones FAIL, so partial-epoch metrics never
shape the sampler nor (see pareto.py) the front.
"""

from __future__ import annotations

import io
import math
import pickle
import threading
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from gradprom.errors import GradpromError, unknown_name
from gradprom.trainables.pipeline import FAILED_KEY

SAMPLERS = ("tpe", "nsga2", "random", "gp")
#: samplers users ask for that this Optuna does not ship, and why gradprom does not offer them
NOT_OFFERED = {"auto": "--sampler auto is OptunaHub's AutoSampler, which optunahub downloads from GitHub at run time "
                       "and gradprom never fetches code; use tpe, nsga2, gp or random"}


STORAGE_HINT = "give an RDB URL such as sqlite:///study.db or postgresql://user@host/db"


def check_storage_url(url: str) -> None:
    """`--storage` checked without connecting (so before any work, with nothing created): a URL SQLAlchemy parses,
    a database kind it knows with its driver installed, and for SQLite a folder that exists and is writable."""
    import os

    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
        parsed.get_dialect().import_dbapi()
    except ImportError as exc:
        raise GradpromError(f"--storage {url}: the {parsed.get_backend_name()} driver is not installed "
                            f"({exc.name or exc}); pip install it, or {STORAGE_HINT}") from None
    except Exception as exc:  # ArgumentError (not a URL), NoSuchModuleError (no such database kind)
        raise GradpromError(f"--storage {url}: {str(exc).splitlines()[0]}; {STORAGE_HINT}") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        folder = Path(parsed.database).expanduser().resolve().parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise GradpromError(f"--storage {url}: the folder {folder} does not exist or is not writable; "
                                "create it or give another path")


def check_sampler(name: str) -> None:
    """A sampler name this gradprom offers, or one line (why it is not offered, or a did-you-mean)."""
    if name in NOT_OFFERED:
        raise GradpromError(NOT_OFFERED[name])
    if name not in SAMPLERS:
        raise unknown_name("sampler", name, SAMPLERS, option="--sampler")


def make_sampler(name: str, seed: int, trials: int) -> optuna.samplers.BaseSampler:
    """A seeded Optuna sampler by name; every one of them takes multi-objective studies in Optuna 5 (GPSampler
    with a multi-objective acquisition; categorical dimensions included)."""
    check_sampler(name)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, trials // 2)))
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, trials // 2)))
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # the start is enqueued (anchors and Sobol points, `seeding`): the GP fits as soon as two trials are in
    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=2)


class StudySearcher(Searcher):
    """A Ray Tune searcher that is one Optuna study, through Optuna's public ask/tell: each Tune trial asks the
    study for its settings (a protocol's cells are enqueued first, so the sampler never draws them), and its end
    is told with the state it really reached: COMPLETE only for a trial that ran `budget` epochs with finite
    objectives, PRUNED for one a scheduler stopped, FAIL for an error or a NaN.

    Tune pickles it with the experiment state (`save`/`restore`), so `--resume` continues the same study; a trial
    the study already knows as finished (a driver killed between telling and Tune's next snapshot) is not told
    twice."""

    def __init__(self, space: dict[str, optuna.distributions.BaseDistribution], metric: list[str], mode: list[str],
                 sampler: optuna.samplers.BaseSampler, budget: int, points_to_evaluate: list[dict] | None = None,
                 storage: optuna.storages.BaseStorage | None = None, study_name: str | None = None) -> None:
        super().__init__(metric=list(metric), mode=list(mode))
        self.space, self.budget = dict(space), budget
        self.study = optuna.create_study(
            storage=storage, sampler=sampler, pruner=optuna.pruners.NopPruner(), study_name=study_name,
            load_if_exists=True, directions=["minimize" if m == "min" else "maximize" for m in mode])
        for point in points_to_evaluate or []:
            self.study.enqueue_trial(point)
        self.asked: dict[str, int] = {}  # Tune trial id -> the study's trial number
        self.told: set[str] = set()

    def suggest(self, trial_id: str) -> dict[str, Any]:
        if trial_id not in self.asked:
            self.asked[trial_id] = self.study.ask(fixed_distributions=self.space).number
        return dict(self.study.get_trials(deepcopy=False)[self.asked[trial_id]].params)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self.told or trial_id not in self.asked:
            return
        self.told.add(trial_id)
        number = self.asked[trial_id]
        if self.study.get_trials(deepcopy=False)[number].state != TrialState.RUNNING:
            return  # the study has its end already (told before the driver was killed; Tune's snapshot lagged)
        values = [(result or {}).get(m) for m in self.metric]
        finished = (result or {}).get("epoch", 0) >= self.budget
        usable = all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
        if error or (result or {}).get(FAILED_KEY) or (finished and not usable):
            self.study.tell(number, state=TrialState.FAIL)
        elif not finished:
            self.study.tell(number, state=TrialState.PRUNED)
        else:
            self.study.tell(number, values)

    def __getstate__(self) -> dict[str, Any]:
        """Tune pickles the searcher (with the Tuner, and in each snapshot); the study goes as bytes of its own, so
        a sampler holding a thread lock (Optuna 5's NSGA-II does) pickles too."""
        return {**self.__dict__, "study": lock_free_dumps(self.study)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        study = state["study"]  # bytes; a study object itself in a searcher pickled by an older gradprom
        self.__dict__.update({**state, "study": pickle.loads(study) if isinstance(study, bytes) else study})

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as file:
            pickle.dump(self.__getstate__(), file)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as file:
            self.__setstate__(pickle.load(file))


_LOCK = type(threading.Lock())


class _LockFreePickler(pickle.Pickler):
    """Pickles a thread lock as a new, unlocked one: a lock guards one process's threads, it holds no state."""

    def reducer_override(self, obj: Any) -> Any:
        return (threading.Lock, ()) if isinstance(obj, _LOCK) else NotImplemented


def lock_free_dumps(obj: Any) -> bytes:
    """`pickle.dumps(obj)`, with any thread lock inside it pickled as a fresh one."""
    buffer = io.BytesIO()
    _LockFreePickler(buffer).dump(obj)
    return buffer.getvalue()


JOURNAL = "optuna.journal"  # the study's journal in the experiment folder (optuna-dashboard reads it)


def study_storage(folder: Path, url: str = "") -> optuna.storages.BaseStorage:
    """Where the study lives: an RDB `url` (postgresql://…, mysql://…, sqlite:///…) or, by default, a journal
    file in the experiment folder (one appending writer per record, no SQLite locking under parallel writers)."""
    if url:
        try:
            return optuna.storages.RDBStorage(url)
        except Exception as exc:  # a bad URL, a missing driver or an unreachable server
            raise GradpromError(f"--storage {url}: {str(exc).splitlines()[0]}; {STORAGE_HINT}") from exc
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(folder / JOURNAL)))


def warm_start(study: optuna.Study, rows: list[dict[str, Any]], space: dict[str, Any],
               objectives: list[str]) -> int:
    """Hand an earlier experiment's finished trials to the study (so the sampler learns from them): every
    completed row whose searched settings lie in today's space and whose objectives are finite. Returns how many."""
    trials = []
    for row in rows:
        if row.get("status") != "completed":
            continue
        params = {k: row.get(k) for k in space}
        values = [row.get(m) for m in objectives]
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            continue
        if not all(_fits(dist, params[key]) for key, dist in space.items()):
            continue
        trials.append(optuna.trial.create_trial(params=params, distributions=space, values=values,
                                                state=TrialState.COMPLETE))
    study.add_trials(trials)
    return len(trials)


def _fits(dist: Any, value: Any) -> bool:
    """Whether `value` is one `dist` can hold (its choices, or its range), from the distribution's public fields."""
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return value in dist.choices
    return isinstance(value, (int, float)) and not isinstance(value, bool) and dist.low <= value <= dist.high
