"""Load pickles of numeric data without letting them run code.

A pickle names the callables that rebuild its objects (``GLOBAL`` / ``STACK_GLOBAL`` / ``INST``
opcodes, resolved through ``Unpickler.find_class``) and calls them while loading, so
``pickle.load`` on a downloaded file runs whatever the file names (``os.system``, ``eval``, ...).
:class:`SafeUnpickler` resolves only an explicit allowlist of numpy / scipy reconstruction
globals; any other name is refused before anything is called. Plain containers and scalars
(dict, list, tuple, str, bytes, int, float, bool, None) are built by opcodes that need no
global, so profile dicts load without admitting ``builtins``.

Legacy names (``numpy.core.*`` from numpy 1.x, ``scipy.sparse.coo`` from scipy < 1.8) are mapped
to the objects of the installed versions instead of being imported, so loading neither imports
deprecated modules nor depends on which numpy / scipy wrote the file.

Not admitted on purpose: ``copyreg._reconstructor`` / ``builtins.object`` (protocol 0/1 pickles
of sparse matrices need them; RLMRec's files are protocol 4) and persistent ids.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from lmmrec_cli.errors import InputError


def _numpy_core(module: str, name: str) -> Callable[[], Any]:
    """Resolve a numpy-internal function from ``numpy._core`` (numpy 2) or ``numpy.core`` (1.x)."""

    def resolve() -> Any:
        import importlib

        try:
            found = importlib.import_module(f"numpy._core.{module}")
        except ImportError:  # numpy 1.x
            found = importlib.import_module(f"numpy.core.{module}")
        return getattr(found, name)

    return resolve


def _numpy(name: str) -> Callable[[], Any]:
    def resolve() -> Any:
        import numpy

        return getattr(numpy, name)

    return resolve


def _scipy_sparse(name: str) -> Callable[[], Any]:
    def resolve() -> Any:
        import scipy.sparse

        return getattr(scipy.sparse, name)

    return resolve


def _build_allowlist() -> dict[tuple[str, str], Callable[[], Any]]:
    allowed: dict[tuple[str, str], Callable[[], Any]] = {
        ("numpy", "dtype"): _numpy("dtype"),
        ("numpy", "ndarray"): _numpy("ndarray"),
    }
    # ndarray reduction (protocols 2-4), numpy scalars (e.g. np.int64 dict keys), protocol-5 arrays.
    for module, name in (
        ("multiarray", "_reconstruct"),
        ("multiarray", "scalar"),
        ("numeric", "_frombuffer"),
    ):
        for package in ("numpy.core", "numpy._core"):
            allowed[(f"{package}.{module}", name)] = _numpy_core(module, name)
    for kind in ("coo", "csr", "csc"):
        for suffix in ("matrix", "array"):
            cls = f"{kind}_{suffix}"
            # scipy >= 1.8 private module, scipy < 1.8 public module, and the package itself.
            for module in (f"scipy.sparse._{kind}", f"scipy.sparse.{kind}", "scipy.sparse"):
                allowed[(module, cls)] = _scipy_sparse(cls)
    return allowed


ALLOWED_GLOBALS: dict[tuple[str, str], Callable[[], Any]] = _build_allowlist()


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global that is not on the allowlist."""

    def __init__(self, module: str, name: str) -> None:
        self.qualified = f"{module}.{name}"
        super().__init__(f"refused global {self.qualified}")


class SafeUnpickler(pickle.Unpickler):
    """An unpickler whose ``find_class`` resolves only :data:`ALLOWED_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Any:
        resolve = ALLOWED_GLOBALS.get((module, name))
        if resolve is None:
            raise RefusedGlobal(module, name)
        return resolve()

    def persistent_load(self, pid: Any) -> Any:
        # Persistent ids hand arbitrary values to application code; data files have none.
        raise pickle.UnpicklingError("persistent ids are not supported")


def _load_from(handle: BinaryIO, source: str | Path) -> Any:
    """Unpickle from an open binary stream; any refusal or damage is an InputError."""
    try:
        return SafeUnpickler(handle).load()
    except RefusedGlobal as refused:
        raise InputError(
            source,
            f"refused to load: the pickle calls {refused.qualified}, which is not a numpy/scipy "
            "data constructor",
            hint="only pickled numpy arrays, scipy sparse matrices and plain dicts/lists/strings "
            "are accepted; do not load this file with pickle",
        ) from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        MemoryError,
        OverflowError,
        UnicodeDecodeError,
    ) as error:
        # Damaged or truncated files surface as many different exception types.
        raise InputError(
            source, f"not a readable pickle ({type(error).__name__}: {error})"
        ) from None


def safe_loads(data: bytes, source: str | Path = "<bytes>") -> Any:
    """Unpickle ``data`` with :class:`SafeUnpickler`."""
    return _load_from(io.BytesIO(data), source)


def safe_load(path: str | Path) -> Any:
    """Unpickle a file with :class:`SafeUnpickler`, streaming it (vector files can be large)."""
    path = Path(path)
    try:
        handle = open(path, "rb")
    except OSError as error:
        raise InputError(path, f"cannot read ({error.strerror or error})") from None
    with handle:
        return _load_from(handle, path)
