"""The restricted unpickler: data loads, code does not run."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from lmmrec_cli.data.safe_pickle import safe_load, safe_loads
from lmmrec_cli.errors import InputError


class _RunsShellCommand:
    """Pickles to a call of os.system(command), as a hostile file would."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _assert_refused(path: Path, marker: Path, refused_global: str) -> None:
    with pytest.raises(InputError) as caught:
        safe_load(path)
    message = caught.value.one_line()
    assert str(path) in message
    assert refused_global in message
    assert not marker.exists(), "the payload ran"


def test_reduce_payload_calling_os_system_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "payload-ran"
    path = tmp_path / "trn_mat.pkl"
    path.write_bytes(pickle.dumps({"m": _RunsShellCommand(f"touch {marker}")}, protocol=4))
    assert b"system" in path.read_bytes()
    _assert_refused(path, marker, f"{os.system.__module__}.system")  # posix.system on Linux


def test_handcrafted_protocol0_os_system_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "payload-ran"
    path = tmp_path / "usr_prf.pkl"
    path.write_bytes(f"cos\nsystem\n(S'touch {marker}'\ntR.".encode())
    _assert_refused(path, marker, "os.system")


def test_the_handcrafted_payload_is_real(tmp_path: Path) -> None:
    """Control: the same bytes do run under plain pickle, so the refusal above is meaningful."""
    marker = tmp_path / "payload-ran"
    pickle.loads(f"cos\nsystem\n(S'touch {marker}'\ntR.".encode())  # noqa: S301 - deliberate
    assert marker.exists()


@pytest.mark.parametrize(
    "payload, refused",
    [
        (b"cbuiltins\neval\n(S'1+1'\ntR.", "builtins.eval"),
        (b"cnumpy\nload\n(S'x.npy'\ntR.", "numpy.load"),  # numpy is not admitted wholesale
        (b"csubprocess\nPopen\n(S'true'\ntR.", "subprocess.Popen"),
        (b"ccopyreg\n_reconstructor\n.", "copyreg._reconstructor"),
    ],
)
def test_other_globals_are_refused(payload: bytes, refused: str) -> None:
    with pytest.raises(InputError, match=refused.replace(".", r"\.")):
        safe_loads(payload, "x.pkl")


def test_refusal_reaches_globals_nested_inside_allowed_data() -> None:
    nested = {
        "vectors": np.zeros((2, 2)),
        "profiles": [{"profile": "x", "hook": _RunsShellCommand("true")}],
    }
    with pytest.raises(InputError, match="system"):
        safe_loads(pickle.dumps(nested, protocol=4), "itm_prf.pkl")


@pytest.mark.parametrize("protocol", [3, 4, 5])
@pytest.mark.parametrize("kind", ["coo_matrix", "csr_matrix", "csc_matrix", "coo_array"])
def test_sparse_matrices_round_trip(kind: str, protocol: int) -> None:
    dense = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
    matrix = getattr(sp, kind)(dense)
    loaded = safe_loads(pickle.dumps(matrix, protocol=protocol))
    assert type(loaded) is type(matrix)
    np.testing.assert_array_equal(loaded.toarray(), dense)


@pytest.mark.parametrize("protocol", [3, 4, 5])
def test_arrays_profile_dicts_and_numpy_scalar_keys_round_trip(protocol: int) -> None:
    data = {
        np.int64(3): {"profile": "likes sci-fi", "reasoning": "reads Asimov"},
        1: {"profile": "ünïcode", "reasoning": ""},
        "vectors": np.arange(12, dtype=np.float32).reshape(3, 4),
        "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        "misc": [None, True, 2.5, (1, 2), b"raw"],
    }
    loaded = safe_loads(pickle.dumps(data, protocol=protocol))
    assert loaded[3] == data[np.int64(3)] and loaded[1] == data[1]
    np.testing.assert_array_equal(loaded["vectors"], data["vectors"])
    np.testing.assert_array_equal(loaded["fortran"], data["fortran"])
    assert loaded["misc"] == data["misc"]


def test_numpy1_and_scipy_legacy_module_names_are_accepted() -> None:
    """Files written by numpy 1.x / old scipy name numpy.core.* and scipy.sparse.coo."""
    # Protocol 3 names globals as text lines (no frame lengths), so names can be swapped in place.
    modern = pickle.dumps(sp.coo_matrix(np.eye(2)), protocol=3)
    legacy = modern.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n").replace(
        b"cscipy.sparse._coo\n", b"cscipy.sparse.coo\n"
    )
    assert b"cnumpy.core.multiarray\n" in legacy and b"cscipy.sparse.coo\n" in legacy
    np.testing.assert_array_equal(safe_loads(legacy).toarray(), np.eye(2))


@pytest.mark.parametrize("data", [b"", b"\x80\x04garbage", b"not a pickle at all"])
def test_damaged_files_are_input_errors(data: bytes) -> None:
    with pytest.raises(InputError, match="not a readable pickle"):
        safe_loads(data, "tst_mat.pkl")


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        safe_load(tmp_path / "absent.pkl")
