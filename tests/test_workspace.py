"""The workspace: content-addressed versions, manifests, atomic commits, locks, lineage."""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path

import pytest

from lmmrec_cli.errors import UsageError
from lmmrec_cli.workspace import (
    MANIFEST,
    Workspace,
    atomic_write_bytes,
    content_hash,
    set_invocation,
)


def _build(ws: Workspace, name: str, key: dict, payload: str = "x", parents=()):
    build = ws.build("datasets", name, key=key, parents=parents)
    with build:
        if build.reused:
            return build.ref, True
        (build.dir / "data.txt").write_text(payload)
        build.counts["rows"] = 1
    return build.ref, False


def test_build_commits_artifact_with_manifest(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    set_invocation(["lmmrec", "prepare", "x"])
    ref, reused = _build(ws, "toy", {"a": 1})
    assert not reused
    manifest = json.loads((ref.path / MANIFEST).read_text())
    for field in ("command", "settings", "parents", "counts", "package_version", "started_at", "finished_at"):
        assert field in manifest
    assert manifest["settings"] == {"a": 1}
    assert manifest["counts"] == {"rows": 1}
    assert manifest["files"] == {"data.txt": {"bytes": 1}}
    assert manifest["command"] == "lmmrec prepare x"
    assert not (ref.path.parent / ".staging" / ref.version).exists()
    assert ws.latest("datasets", "toy") == ref


def test_same_key_is_reused_and_does_no_work(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    first, _ = _build(ws, "toy", {"a": 1}, payload="first")
    second, reused = _build(ws, "toy", {"a": 1}, payload="second")
    assert reused and second == first
    assert (first.path / "data.txt").read_text() == "first"


def test_different_settings_give_new_version_and_latest_follows(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    one, _ = _build(ws, "toy", {"a": 1})
    two, _ = _build(ws, "toy", {"a": 2})
    assert one.version != two.version
    assert ws.latest("datasets", "toy") == two
    _build(ws, "toy", {"a": 1})  # using the old version again makes it the latest
    assert ws.latest("datasets", "toy") == one
    assert [r.version for r in ws.versions("datasets", "toy")] == [one.version, two.version]


def test_version_depends_on_parents(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    parent_a, _ = _build(ws, "p", {"a": 1})
    parent_b, _ = _build(ws, "p", {"a": 2})
    child_a, _ = _build(ws, "c", {"x": 0}, parents=[parent_a])
    child_b, _ = _build(ws, "c", {"x": 0}, parents=[parent_b])
    assert child_a.version != child_b.version
    assert ws.children(parent_a) == [child_a]


def test_failed_build_leaves_nothing(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    build = ws.build("datasets", "toy", key={"a": 1})
    with pytest.raises(RuntimeError):
        with build:
            (build.dir / "half.txt").write_text("partial")
            raise RuntimeError("boom")
    assert ws.versions("datasets", "toy") == []
    assert not build.dir.exists()
    assert not build.final_dir.exists()


def test_resumable_build_keeps_staging_for_resume(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    build = ws.build("runs", "r", key={"a": 1}, resumable=True)
    with pytest.raises(RuntimeError):
        with build:
            (build.dir / "checkpoint").write_text("epoch 3")
            raise RuntimeError("killed")
    again = ws.build("runs", "r", key={"a": 1}, resumable=True)
    with again:
        assert again.resumed
        assert (again.dir / "checkpoint").read_text() == "epoch 3"
    assert ws.find("runs", "r", again.version) is not None


def test_resolve_forms_and_errors(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    ref, _ = _build(ws, "toy", {"a": 1})
    assert ws.resolve("datasets", "toy") == ref
    assert ws.resolve("datasets", "toy@latest") == ref
    assert ws.resolve("datasets", f"toy@{ref.version[:6]}") == ref
    assert ws.resolve("datasets", str(ref.path)) == ref
    with pytest.raises(UsageError, match="no dataset named 'nope'.*known datasets: toy"):
        ws.resolve("datasets", "nope")
    with pytest.raises(UsageError, match="does not exist"):
        ws.resolve("datasets", "toy@ffffff")


def test_invalid_names_are_refused(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    for bad in ("", "a/b", ".hidden", "latest", "x@y"):
        with pytest.raises(UsageError):
            ws.build("datasets", bad, key={})


def test_manifest_command_masks_secrets(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    fake_key = "sk-" + "abcdefghijklmnopqrstuvwx"  # assembled so no key-shaped literal is tracked
    set_invocation(["lmmrec", "motivate", "--api-key", fake_key, "--base-url", "https://u:pw@host/v1"])
    ref, _ = _build(ws, "toy", {"a": 1})
    text = (ref.path / MANIFEST).read_text()
    assert "sk-abcdefghijklmnop" not in text and "pw@" not in text
    assert "--api-key ***" in text


def test_atomic_write_keeps_old_content_on_failure(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "f.json"
    atomic_write_bytes(target, b"old")

    def fail_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("lmmrec_cli.workspace.os.replace", fail_replace)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_fingerprint_is_cached_by_size_and_mtime(tmp_path: Path, monkeypatch) -> None:
    ws = Workspace(tmp_path / "ws")
    data = tmp_path / "raw.txt"
    data.write_text("hello")
    first = ws.fingerprint(data)
    calls = []
    monkeypatch.setattr("lmmrec_cli.workspace.file_sha256", lambda p: calls.append(p) or "x")
    assert ws.fingerprint(data) == first and calls == []
    data.write_text("hello, world")
    assert ws.fingerprint(data)["sha256"] == "x" and len(calls) == 1


def test_content_hash_ignores_key_order() -> None:
    assert content_hash({"a": 1, "b": [1, 2]}) == content_hash({"b": [1, 2], "a": 1})
    assert content_hash({"a": 1}) != content_hash({"a": 2})


def _slow_builder(root: str, started, results) -> None:
    ws = Workspace(root)
    build = ws.build("datasets", "shared", key={"k": 1})
    with build:
        started.set()
        if not build.reused:
            time.sleep(1.0)
            (build.dir / "data.txt").write_text("from the first process")
    results.put(("first", build.reused))


def _second_builder(root: str, results) -> None:
    ws = Workspace(root)
    build = ws.build("datasets", "shared", key={"k": 1})
    with build:
        if not build.reused:
            (build.dir / "data.txt").write_text("from the second process")
    results.put(("second", build.reused))


def test_lock_makes_second_process_wait_and_reuse(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    started, results = ctx.Event(), ctx.Queue()
    first = ctx.Process(target=_slow_builder, args=(str(tmp_path), started, results))
    first.start()
    assert started.wait(30)
    second = ctx.Process(target=_second_builder, args=(str(tmp_path), results))
    second.start()
    first.join(30)
    second.join(30)
    outcome = dict(results.get(timeout=5) for _ in range(2))
    assert outcome == {"first": False, "second": True}
    (ref,) = Workspace(tmp_path).versions("datasets", "shared")
    assert (ref.path / "data.txt").read_text() == "from the first process"
