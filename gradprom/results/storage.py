"""Where experiments live: a local or NFS folder, or a storage URI (s3://, gs://, file://, …) that pyarrow opens.

With a URI, Ray Tune writes every trial's checkpoints and results to the store itself (its `storage_path`),
from whichever node the trial runs on. The driver's own files (manifest, trials/epochs/pareto Parquet,
plots) are written to a local copy of OUT/NAME under the gradprom cache, and every write is mirrored to
the store through pyarrow's filesystem right away, so the store always holds what a local folder would.
Readers (`gradprom pareto`, `report`, `--resume`) fetch OUT/NAME's files from the store first.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradprom.errors import GradpromError

SKIP = ("ray",)  # Tune's own tree under OUT/NAME: read in place by Tune, never copied to the local side


def is_uri(out: str) -> bool:
    return "://" in str(out)


@dataclass(frozen=True)
class Store:
    """A folder on a pyarrow filesystem: the filesystem, the path within it, and the URI users wrote."""

    uri: str
    fs: Any
    path: str

    @classmethod
    def open(cls, uri: str) -> Store:
        import pyarrow.fs

        try:
            fs, path = pyarrow.fs.FileSystem.from_uri(uri)
        except Exception as exc:  # pyarrow raises ArrowInvalid/OSError/…: one line either way
            raise GradpromError(f"cannot open --out {uri} ({str(exc).splitlines()[0]}); use s3://BUCKET/PATH, "
                                "gs://BUCKET/PATH, file:///PATH or a plain folder, with credentials in the "
                                "environment") from None
        return cls(uri.rstrip("/"), fs, path.rstrip("/"))

    def child(self, name: str) -> Store:
        return Store(f"{self.uri}/{name}", self.fs, f"{self.path}/{name}")

    def exists(self) -> bool:
        import pyarrow.fs

        return self.fs.get_file_info(self.path).type != pyarrow.fs.FileType.NotFound

    def pull(self, local: Path) -> int:
        """Copy the store's files (but Tune's tree) into `local`; returns how many."""
        import pyarrow.fs

        if not self.exists():
            return 0
        copied = 0
        for info in self.fs.get_file_info(pyarrow.fs.FileSelector(self.path, recursive=True)):
            relative = info.path[len(self.path):].lstrip("/")
            if info.type != pyarrow.fs.FileType.File or relative.split("/", 1)[0] in SKIP:
                continue
            target = local / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            with self.fs.open_input_stream(info.path) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            copied += 1
        return copied

    def push(self, local: Path, names: tuple[str, ...]) -> None:
        """Write `local`/NAME to the store for each name (one object each: readers never see half a file
        on object stores; on file systems pyarrow writes in place)."""
        self.fs.create_dir(self.path, recursive=True)
        for name in names:
            source = local / name
            if source.is_file():
                if "/" in name:  # a file in a subfolder (fronts/…): file systems need the folder first
                    self.fs.create_dir(f"{self.path}/{name.rpartition('/')[0]}", recursive=True)
                try:
                    with open(source, "rb") as src, self.fs.open_output_stream(f"{self.path}/{name}") as dst:
                        shutil.copyfileobj(src, dst)
                except OSError as exc:
                    raise GradpromError(f"cannot write {self.uri}/{name} ({str(exc).splitlines()[0]}); the local "
                                        f"copy is kept in {local}; check the store's credentials and space") from None

    def delete(self, names: frozenset[str]) -> None:
        """Remove the entries `names` of this folder on the store (what gradprom wrote there), nothing else."""
        import pyarrow.fs

        if not self.exists():
            return
        for info in self.fs.get_file_info(pyarrow.fs.FileSelector(self.path)):
            if info.base_name not in names:
                continue
            if info.type == pyarrow.fs.FileType.Directory:
                self.fs.delete_dir(info.path)
            else:
                self.fs.delete_file(info.path)


_MIRRORS: dict[Path, Store] = {}


def local_folder(out: str, name: str = "") -> Path:
    """The local folder of experiment OUT/NAME: OUT/NAME itself for a folder; for a URI, a copy under the
    gradprom cache, filled from the store (once per process) and mirrored back by `publish`."""
    if not is_uri(out):
        return Path(out).expanduser().resolve() / name if name else Path(out).expanduser().resolve()
    from gradprom.cache import default_cache_dir

    store = Store.open(out)
    store = store.child(name) if name else store
    key = hashlib.sha1(store.uri.encode()).hexdigest()[:12]
    local = Path(default_cache_dir()) / "stores" / key / (name or Path(store.path).name or "experiment")
    if local not in _MIRRORS:
        if local.exists():
            shutil.rmtree(local)  # a stale copy from an earlier process: the store is the truth
        local.mkdir(parents=True)
        store.pull(local)
        _MIRRORS[local] = store
    return local


def store_of(local: Path) -> Store | None:
    """The store `local` mirrors (None for a plain folder)."""
    return _MIRRORS.get(local)


def tune_storage(local: Path) -> str:
    """Where Ray Tune keeps this experiment's trials: the store's `ray/` for a URI, else the local folder's."""
    store = store_of(local)
    return f"{store.uri}/ray" if store else str(local / "ray")


def publish(local: Path, *names: str) -> None:
    """Mirror just-written files of `local` to its store (nothing for a plain folder)."""
    store = store_of(local)
    if store is not None:
        store.push(local, names)
