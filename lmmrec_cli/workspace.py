"""The workspace: versioned artifacts, their manifests, atomic commits and locks.

Layout (the README's "The workspace" section says what each part holds)::

    <root>/<kind>/<name>/<version>/      one artifact: its files and manifest.json
    <root>/<kind>/<name>/latest          symlink to the version used most recently
    <root>/<kind>/<name>/.staging/<v>/   an artifact being built (renamed into place when done)
    <root>/<kind>/<name>/.locks/<v>.lock one process builds a version at a time
    <root>/cache/                        LLM and embedding caches, input fingerprints

A version is a short content hash of everything that determines the artifact (input file
hashes, parent versions, settings), so building the same thing twice finds the first result
and does no work. An artifact becomes visible only when complete: files are written into a
staging directory that is renamed into place together with its manifest, so a crash leaves
nothing half written where readers look.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from lmmrec_cli import __version__
from lmmrec_cli.errors import DISK_FULL_ERRNOS, DamagedFileError, DiskFullError, InputError, UsageError
from lmmrec_cli.redact import redact_argv

ARTIFACT_KINDS = ("datasets", "motivations", "embeddings", "runs")
ENV_WORKSPACE = "LMMREC_WORKSPACE"
DEFAULT_WORKSPACE = "lmmrec-work"
MANIFEST = "manifest.json"
LATEST = "latest"
_STAGING = ".staging"
_LOCKS = ".locks"
_VERSION_LENGTH = 12
# Names become directory names (and parts of derived names: a run adds model, plugin, seed).
MAX_NAME_LENGTH = 100
NAME_RULE = "use letters, digits, '-', '_' or '.', starting with a letter, digit or '_'"
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def check_name(name: str, what: str = "artifact name") -> str:
    """``name`` if it can name an artifact; else a :class:`UsageError` naming ``what`` (a flag)."""
    if len(name) > MAX_NAME_LENGTH:
        raise UsageError(f"{what} is too long ({len(name)} characters; at most {MAX_NAME_LENGTH})", hint=NAME_RULE)
    if not _NAME.fullmatch(name) or name == LATEST:
        raise UsageError(f"invalid {what} {name!r}", hint=f"{NAME_RULE}; not 'latest'")
    return name


# --------------------------------------------------------------------------------------------
# hashing and atomic files


def _json_default(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: equal settings give equal text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)


def content_hash(obj: Any, length: int = _VERSION_LENGTH) -> str:
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()[:length]


def file_sha256(path: str | Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write a file so that readers see either the old content or the new, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with _naming_disk_full(path), os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place if the block succeeds.

    For writers that want a file name rather than bytes (Parquet, numpy, torch.save).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with _naming_disk_full(path):
            yield Path(tmp)
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


@contextmanager
def _naming_disk_full(path: Path) -> Iterator[None]:
    """A full disk (or `ulimit -f`) while writing ``path`` becomes an error that names it."""
    try:
        yield
    except DiskFullError:
        raise
    except OSError as error:
        if error.errno not in DISK_FULL_ERRNOS:
            raise
        raise DiskFullError(error, path) from None
    except RuntimeError:  # torch.save reports a short write as "unexpected pos ..."
        full = _out_of_space(path.parent)
        if full is None:
            raise
        raise DiskFullError(full, path) from None


def _out_of_space(directory: Path) -> OSError | None:
    """The disk-full error that writing 1 MiB into ``directory`` hits now, if any: asked after
    a writer failed without saying why."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".space-probe.", dir=directory)
    except OSError as error:
        return error if error.errno in DISK_FULL_ERRNOS else None
    try:
        block = memoryview(bytes(1 << 20))
        while block:
            block = block[os.write(fd, block):]
    except OSError as error:
        return error if error.errno in DISK_FULL_ERRNOS else None
    finally:
        os.close(fd)
        os.unlink(probe)
    return None


def _newest_file(directory: Path) -> Path | None:
    """The file written last under ``directory`` (the one a failed write was filling)."""
    newest: tuple[int, Path] | None = None
    for path in directory.rglob("*"):
        try:
            if path.is_file() and (newest is None or path.stat().st_mtime_ns > newest[0]):
                newest = (path.stat().st_mtime_ns, path)
        except OSError:
            continue
    return newest[1] if newest else None


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


# --------------------------------------------------------------------------------------------
# the command line that produced an artifact

_invocation: list[str] | None = None


def set_invocation(argv: list[str]) -> None:
    """Record the command line of this process (called once by the CLI entry point)."""
    global _invocation
    _invocation = list(argv)


def invocation() -> str:
    argv = _invocation if _invocation is not None else ["lmmrec", *sys.argv[1:]]
    return " ".join(redact_argv(argv))


# --------------------------------------------------------------------------------------------
# artifacts


@dataclasses.dataclass(frozen=True)
class ArtifactRef:
    """A complete artifact on disk."""

    kind: str
    name: str
    version: str
    path: Path

    @property
    def label(self) -> str:
        return f"{self.kind}/{self.name}@{self.version}"

    def manifest(self) -> dict[str, Any]:
        """The artifact's manifest; :class:`DamagedFileError` if it cannot be read back."""
        return self.read_json(MANIFEST)

    def read_json(self, filename: str) -> Any:
        """A JSON file of the artifact; a truncated or corrupt one is a :class:`DamagedFileError`."""
        path = self.path / filename
        try:
            with open(path, encoding="utf-8") as handle:
                return json.load(handle)
        except (ValueError, UnicodeDecodeError) as error:
            raise DamagedFileError(path, error, hint=self.rebuild_hint) from None

    @property
    def rebuild_hint(self) -> str:
        return f"delete {self.path} and run the command that made {self.label} again"

    def as_parent(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "version": self.version}


class ArtifactBuild:
    """Context manager that builds one artifact version, or finds it already built.

    Usage::

        build = workspace.build("datasets", "demo", key=settings)
        with build:
            if build.reused:
                return build.ref
            write files into build.dir
            build.counts["users"] = ...
        return build.ref

    On success the manifest is written and the staging directory is renamed into place.
    On failure the staging directory is removed, unless ``resumable`` is set (training runs
    keep their checkpoints there so ``--resume`` can continue).
    """

    def __init__(
        self,
        workspace: Workspace,
        kind: str,
        name: str,
        version: str,
        *,
        settings: dict[str, Any],
        parents: Iterable[ArtifactRef],
        inputs: list[dict[str, Any]],
        resumable: bool,
        lock_timeout: float,
    ) -> None:
        self.workspace = workspace
        self.kind = kind
        self.name = name
        self.version = version
        self.settings = settings
        self.parents = [p.as_parent() for p in parents]
        self.inputs = inputs
        self.resumable = resumable
        self.counts: dict[str, Any] = {}
        self.extra: dict[str, Any] = {}
        self.reused = False
        self.resumed = False
        self._lock = FileLock(str(workspace.artifact_parent(kind, name) / _LOCKS / f"{version}.lock"))
        self._lock_timeout = lock_timeout
        self._started = 0.0
        self._started_iso = ""

    @property
    def final_dir(self) -> Path:
        return self.workspace.artifact_parent(self.kind, self.name) / self.version

    @property
    def dir(self) -> Path:
        """Where the artifact's files are written while it is built."""
        return self.workspace.artifact_parent(self.kind, self.name) / _STAGING / self.version

    @property
    def ref(self) -> ArtifactRef:
        return ArtifactRef(self.kind, self.name, self.version, self.final_dir)

    def __enter__(self) -> ArtifactBuild:
        Path(self._lock.lock_file).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            print(
                f"waiting for another lmmrec process that is building {self.ref.label} ...",
                file=sys.stderr,
            )
            try:
                self._lock.acquire(timeout=self._lock_timeout)
            except Timeout:
                raise UsageError(
                    f"{self.ref.label} is locked by another process",
                    hint=f"wait for it to finish, or remove {self._lock.lock_file} if none runs",
                ) from None
        self._started = time.time()
        self._started_iso = now_iso()
        if (self.final_dir / MANIFEST).is_file():
            self.reused = True
            return self
        if self.dir.exists():
            if self.resumable:
                self.resumed = True
            else:
                shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if self.reused:
                if exc_type is None:
                    self.workspace.set_latest(self.kind, self.name, self.version)
                return
            if exc_type is not None:
                disk_full = isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS
                writing = (exc.filename or _newest_file(self.dir) or f"{self.ref.label} (in {self.dir})"
                           if disk_full else None)
                if not self.resumable:
                    shutil.rmtree(self.dir, ignore_errors=True)
                if disk_full:  # e.g. a Parquet writer's error, which names no file
                    raise DiskFullError(exc, writing) from None
                return
            try:
                self._commit()
            except BaseException:
                if not self.resumable:
                    shutil.rmtree(self.dir, ignore_errors=True)
                raise
        finally:
            self._lock.release()

    def _commit(self) -> None:
        files = {}
        for path in sorted(self.dir.rglob("*")):
            if path.is_file() and path.name != MANIFEST:
                files[str(path.relative_to(self.dir))] = {"bytes": path.stat().st_size}
        manifest = {
            "kind": self.kind,
            "name": self.name,
            "version": self.version,
            "command": invocation(),
            "settings": self.settings,
            "inputs": self.inputs,
            "parents": self.parents,
            "counts": self.counts,
            "files": files,
            "package_version": __version__,
            "started_at": self._started_iso,
            "finished_at": now_iso(),
            "duration_s": round(time.time() - self._started, 3),
            **self.extra,
        }
        atomic_write_json(self.dir / MANIFEST, manifest)
        if self.final_dir.exists():  # an older, manifest-less leftover: never a complete artifact
            shutil.rmtree(self.final_dir)
        os.replace(self.dir, self.final_dir)
        self.workspace.set_latest(self.kind, self.name, self.version)


class Workspace:
    """A directory of artifacts; see the module docstring for the layout."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()

    @classmethod
    def locate(cls, option: str | Path | None = None) -> Workspace:
        """``--workspace`` if given, else ``$LMMREC_WORKSPACE``, else ``./lmmrec-work``."""
        chosen = option or os.environ.get(ENV_WORKSPACE) or DEFAULT_WORKSPACE
        return cls(chosen)

    # -- paths ----------------------------------------------------------------------------

    def kind_dir(self, kind: str) -> Path:
        if kind not in ARTIFACT_KINDS:
            raise ValueError(f"unknown artifact kind {kind!r}")
        return self.root / kind

    def artifact_parent(self, kind: str, name: str) -> Path:
        return self.kind_dir(kind) / check_name(name)

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    # -- listing and resolving ------------------------------------------------------------

    def names(self, kind: str) -> list[str]:
        base = self.kind_dir(kind)
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))

    def versions(self, kind: str, name: str) -> list[ArtifactRef]:
        """Complete versions of ``kind/name``, oldest first."""
        base = self.kind_dir(kind) / name
        if not base.is_dir():
            return []
        refs = []
        for path in base.iterdir():
            if path.name.startswith(".") or path.name == LATEST or path.is_symlink():
                continue
            if (path / MANIFEST).is_file():
                refs.append(ArtifactRef(kind, name, path.name, path))

        def finished(ref: ArtifactRef) -> tuple[str, int, str]:
            try:
                mtime = (ref.path / MANIFEST).stat().st_mtime_ns
                return (ref.manifest().get("finished_at", ""), mtime, ref.version)
            except (OSError, DamagedFileError):
                return ("", 0, ref.version)

        return sorted(refs, key=finished)

    def find(self, kind: str, name: str, version: str) -> ArtifactRef | None:
        path = self.kind_dir(kind) / name / version
        if (path / MANIFEST).is_file():
            return ArtifactRef(kind, name, version, path)
        return None

    def latest(self, kind: str, name: str) -> ArtifactRef | None:
        pointer = self.kind_dir(kind) / name / LATEST
        version: str | None = None
        if pointer.is_symlink():
            version = os.readlink(pointer)
        elif pointer.is_file():
            version = pointer.read_text(encoding="utf-8").strip()
        if version:
            found = self.find(kind, name, Path(version).name)
            if found:
                return found
        versions = self.versions(kind, name)
        return versions[-1] if versions else None

    def set_latest(self, kind: str, name: str, version: str) -> None:
        parent = self.kind_dir(kind) / name
        pointer = parent / LATEST
        tmp = parent / f".{LATEST}.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        try:
            os.symlink(version, tmp)
        except OSError:  # file systems without symlinks: a one-line text file
            tmp.write_text(version + "\n", encoding="utf-8")
        os.replace(tmp, pointer)

    def resolve(self, kind: str, reference: str) -> ArtifactRef:
        """Find an artifact from ``NAME``, ``NAME@latest``, ``NAME@VERSION`` (or a unique prefix
        of the version, at least 4 characters) or a path to an artifact directory."""
        reference = reference.strip()
        as_path = Path(reference).expanduser()
        if "@" not in reference and (as_path / MANIFEST).is_file():
            manifest = ArtifactRef(kind, as_path.parent.name, as_path.name, as_path).manifest()
            try:
                return ArtifactRef(manifest["kind"], manifest["name"], manifest["version"], as_path)
            except (KeyError, TypeError):
                raise DamagedFileError(as_path / MANIFEST, ValueError("no kind, name or version in it")) from None
        name, _, version = reference.partition("@")
        singular = kind.rstrip("s")
        if name not in self.names(kind):
            known = ", ".join(self.names(kind)) or "none yet"
            raise UsageError(
                f"no {singular} named {name!r} in workspace {self.root}",
                hint=f"known {kind}: {known}",
            )
        if not version or version == LATEST:
            found = self.latest(kind, name)
            if found is None:
                raise UsageError(f"{kind}/{name} has no complete version yet")
            return found
        candidates = [r for r in self.versions(kind, name) if r.version.startswith(version)]
        if len(version) < 4 or len(candidates) != 1:
            known = ", ".join(r.version for r in self.versions(kind, name))
            problem = "is ambiguous" if len(candidates) > 1 else "does not exist"
            raise UsageError(
                f"version {version!r} of {kind}/{name} {problem}", hint=f"versions: {known}"
            )
        return candidates[0]

    def all_artifacts(self) -> list[ArtifactRef]:
        return [ref for kind in ARTIFACT_KINDS for n in self.names(kind) for ref in self.versions(kind, n)]

    def unfinished(self) -> list[ArtifactRef]:
        """Versions begun in staging and not committed: interrupted (or still being built)."""
        found = []
        for kind in ARTIFACT_KINDS:
            for name in self.names(kind):
                staging = self.kind_dir(kind) / name / _STAGING
                if staging.is_dir():
                    found += [ArtifactRef(kind, name, p.name, p) for p in sorted(staging.iterdir()) if p.is_dir()]
        return found

    def clean_leftovers(self) -> list[Path]:
        """Remove what killed builds left: a staging directory or lock file whose lock no
        process holds (the lock dies with its process, kill -9 included). Kept: what a live
        process holds, and a training run's staging (``train --resume`` continues from it;
        ``status`` shows it). Returns what was removed."""
        removed: list[Path] = []
        for kind in ARTIFACT_KINDS:
            for name in self.names(kind):
                parent = self.artifact_parent(kind, name)
                staging, locks = parent / _STAGING, parent / _LOCKS
                versions = {p.name for p in staging.iterdir() if p.is_dir()} if staging.is_dir() else set()
                if locks.is_dir():
                    versions |= {p.name[: -len(".lock")] for p in locks.glob("*.lock")}
                for version in sorted(versions):
                    path = locks / f"{version}.lock"
                    locks.mkdir(exist_ok=True)
                    lock = FileLock(str(path))
                    try:
                        lock.acquire(timeout=0)
                    except Timeout:
                        continue  # a live process is building it
                    try:
                        if (staging / version).is_dir() and kind != "runs":
                            shutil.rmtree(staging / version, ignore_errors=True)
                            removed.append(staging / version)
                        if not (staging / version).is_dir():
                            path.unlink(missing_ok=True)  # while held: no one else holds it
                            removed.append(path)
                    finally:
                        lock.release()
        return removed

    def children(self, ref: ArtifactRef, kind: str | None = None) -> list[ArtifactRef]:
        """Artifacts (of ``kind`` only, when given) that name ``ref`` as a parent."""
        wanted = ref.as_parent()
        found = []
        candidates = self.all_artifacts() if kind is None else [
            other for name in self.names(kind) for other in self.versions(kind, name)]
        for other in candidates:
            try:
                parents = other.manifest().get("parents", [])
            except (OSError, DamagedFileError):
                continue
            if wanted in parents:
                found.append(other)
        return found

    # -- building -------------------------------------------------------------------------

    def build(
        self,
        kind: str,
        name: str,
        *,
        key: dict[str, Any],
        settings: dict[str, Any] | None = None,
        parents: Iterable[ArtifactRef] = (),
        inputs: list[dict[str, Any]] | None = None,
        resumable: bool = False,
        lock_timeout: float = 3600.0,
    ) -> ArtifactBuild:
        """Prepare to build ``kind/name`` at the version that ``key`` hashes to.

        ``key`` must hold everything that determines the artifact's content; ``parents`` and
        ``inputs`` are added to it. ``settings`` (default: ``key``) is what the manifest shows.
        """
        parents = list(parents)
        inputs = list(inputs or [])
        full_key = {
            "kind": kind,
            "key": key,
            "parents": [p.as_parent() for p in parents],
            "inputs": [{"sha256": i.get("sha256"), "role": i.get("role")} for i in inputs],
        }
        version = content_hash(full_key)
        return ArtifactBuild(
            self,
            kind,
            name,
            version,
            settings=settings if settings is not None else key,
            parents=parents,
            inputs=inputs,
            resumable=resumable,
            lock_timeout=lock_timeout,
        )

    # -- input fingerprints ---------------------------------------------------------------

    def fingerprint(self, path: str | Path, role: str = "input") -> dict[str, Any]:
        """Path, size and SHA-256 of an input file; the hash is cached by (path, size, mtime)
        so re-running a step on a multi-GB dump does not re-read it just to find its version."""
        given = Path(path).expanduser()
        path = given.resolve()
        try:
            stat = path.stat()
            digest = self._cached_sha256(path, stat)
        except OSError as error:
            reason = error.strerror or str(error)
            raise InputError(given, f"cannot be read ({reason})", hint="check the file and its permissions") from None
        return {"role": role, "path": str(path), "bytes": stat.st_size, "sha256": digest}

    def _cached_sha256(self, path: Path, stat: os.stat_result) -> str:
        cache_file = self.cache_dir / "fingerprints.json"
        cache_key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
        try:
            cache = json.loads(cache_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            cache = {}
        digest = cache.get(cache_key)
        if digest is None:
            digest = file_sha256(path)
            cache[cache_key] = digest
            try:
                atomic_write_json(cache_file, cache)
            except (OSError, DiskFullError):
                pass  # the cache is an optimisation only
        return digest
