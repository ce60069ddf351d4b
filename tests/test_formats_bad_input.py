"""Bad input through ``lmmrec prepare``: one clear error line (file:line, remedy), a non-zero
exit, no traceback and no half artifact under ``--strict``; counted, reported and recorded
under ``--on-bad-line skip``."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from conftest import run_cli, write_json_lines, write_lines

LOOSE = ("--min-rating", "0", "--min-user-interactions", "1", "--min-item-interactions", "1")


def review(user: int, item: int, rating: float = 5.0) -> dict:
    return {
        "overall": rating,
        "verified": True,
        "reviewerID": f"U{user}",
        "asin": f"B{item:03d}",
        "reviewText": f"review {user}-{item}",
        "summary": "ok",
        "unixReviewTime": 1400000000 + user,
    }


def good_lines(count: int = 30) -> list[str]:
    return [json.dumps(review(k % 10, k % 7)) for k in range(count)]


def assert_clean_failure(result, workspace: Path, *must_contain: str) -> str:
    """One ``error:`` line on stderr, non-zero exit, no traceback, no artifact left."""
    assert result.exit_code != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr + result.stdout
    for text in must_contain:
        assert text in lines[0], lines[0]
    datasets = workspace / "datasets"
    for name_dir in datasets.iterdir() if datasets.is_dir() else []:
        versions = [p for p in name_dir.iterdir() if not p.name.startswith(".")]
        assert versions == [], f"half artifact left: {versions}"
        staging = name_dir / ".staging"
        assert not staging.exists() or list(staging.iterdir()) == [], "staging leftovers"
    return lines[0]


def prepare(path: Path, workspace: Path, *extra: str):
    return run_cli("prepare", path, "-w", workspace, "-q", *LOOSE, *extra)


# Each case: the file content (bytes) and what the error line must name.
TRUNCATED = (
    "\n".join(good_lines(5))
    + '\n{"overall": 5.0, "verified": true, "reviewerID": "U1", "asi\n'
    + good_lines(3)[0]
    + "\n"
)
MISSING_FIELD = (
    "\n".join(good_lines(4))
    + "\n"
    + json.dumps({k: v for k, v in review(1, 2).items() if k != "asin"})
    + "\n"
)
BAD_RATING = (
    "\n".join(good_lines(2)) + "\n" + json.dumps({**review(1, 2), "overall": "five"}) + "\n"
)
NOT_UTF8 = (
    ("\n".join(good_lines(3)) + "\n").encode()
    + json.dumps(review(1, 9)).encode().replace(b"review 1", b"r\xe9view 1")
    + b"\n"
)

BAD_LINE_CASES = {
    "truncated line": (TRUNCATED.encode(), 6, "malformed or truncated line"),
    "missing field": (MISSING_FIELD.encode(), 5, "missing required field 'asin'"),
    "bad rating": (BAD_RATING.encode(), 3, "rating 'five' is not a number"),
    "encoding error": (NOT_UTF8, 4, "not valid utf-8 text"),
}


@pytest.mark.parametrize("case", sorted(BAD_LINE_CASES))
def test_strict_stops_at_the_bad_line_with_one_clear_error(tmp_path, case):
    content, line, problem = BAD_LINE_CASES[case]
    path = tmp_path / "Beauty_5.json"
    path.write_bytes(content)
    result = prepare(path, tmp_path / "ws", "--strict")
    error = assert_clean_failure(result, tmp_path / "ws", f"{path}:{line}:", problem)
    assert "--on-bad-line skip" in error  # the remedy


@pytest.mark.parametrize("case", sorted(BAD_LINE_CASES))
def test_skip_counts_reports_and_records_bad_lines(tmp_path, case):
    content, line, problem = BAD_LINE_CASES[case]
    path = tmp_path / "Beauty_5.json"
    path.write_bytes(content)
    result = prepare(path, tmp_path / "ws", "--on-bad-line", "skip")
    assert result.exit_code == 0, result.stderr
    assert "bad lines skipped" in result.stdout
    assert f"{path}:{line}" in result.stdout  # first offending line numbers in the summary
    (manifest_path,) = (tmp_path / "ws" / "datasets").glob("*/latest/manifest.json")
    bad = json.loads(manifest_path.read_text())["counts"]["bad_lines"]
    assert bad["policy"] == "skip" and bad["count"] == 1
    assert bad["examples"][0]["line"] == line and problem in bad["examples"][0]["problem"]


def test_many_bad_lines_keep_count_and_first_examples(tmp_path):
    lines = good_lines(20)
    for k in (2, 5, 8, 11, 14, 17, 19):
        lines[k] = lines[k][:25]  # truncated in the middle of a key
    path = write_lines(tmp_path / "r.json", lines)
    result = run_cli("prepare", path, "-w", tmp_path / "ws", "-q", "--json", *LOOSE)
    bad = json.loads(result.stdout)["counts"]["bad_lines"]
    assert bad["count"] == 7
    assert [e["line"] for e in bad["examples"]] == [3, 6, 9, 12, 15]


def _gzip_with_damage(tmp_path: Path, where: str) -> Path:
    data = bytearray(gzip.compress(("\n".join(good_lines(3000)) + "\n").encode(), mtime=0))
    if where == "header":
        data[2] = 7  # compression method 7 does not exist (8 is deflate)
    else:
        # Damage in the compressed middle: zlib may decode garbage until the CRC check at the
        # end, so a strict run stops at the first garbage line and a skipping run at the CRC.
        middle = len(data) // 2
        data[middle : middle + 64] = bytes(b ^ 0x5A for b in data[middle : middle + 64])
    path = tmp_path / "Beauty_5.json.gz"
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("policy", ["--strict", "--on-bad-line=skip"])
def test_corrupt_gzip_header_is_an_error_under_any_policy(tmp_path, policy):
    path = _gzip_with_damage(tmp_path, "header")
    result = prepare(path, tmp_path / "ws", policy)
    assert_clean_failure(result, tmp_path / "ws", f"{path}:1:", "gzip data is corrupt")


def test_corrupt_gzip_body(tmp_path):
    path = _gzip_with_damage(tmp_path, "middle")
    strict = prepare(path, tmp_path / "ws", "--strict")
    assert_clean_failure(strict, tmp_path / "ws", f"{path}:")
    skip = prepare(path, tmp_path / "ws", "--on-bad-line", "skip")
    assert_clean_failure(skip, tmp_path / "ws", f"{path}:", "gzip data is corrupt")


def test_truncated_gzip_names_file_and_line(tmp_path):
    data = gzip.compress(("\n".join(good_lines(3000)) + "\n").encode(), mtime=0)
    path = tmp_path / "Beauty_5.json.gz"
    path.write_bytes(data[: len(data) - 200])
    result = prepare(path, tmp_path / "ws")
    error = assert_clean_failure(result, tmp_path / "ws", f"{path}:", "truncated")
    line = int(error.split(f"{path}:")[1].split(":")[0])
    assert 1000 < line <= 3001  # the line where reading stopped, not line 1


@pytest.mark.parametrize("gz", [False, True])
def test_empty_file(tmp_path, gz):
    path = tmp_path / ("empty.json.gz" if gz else "empty.json")
    path.write_bytes(gzip.compress(b"") if gz else b"\n\n")
    assert_clean_failure(
        prepare(path, tmp_path / "ws"), tmp_path / "ws", str(path), "the file is empty"
    )


def test_unknown_format_suggests_format_option(tmp_path):
    path = write_lines(tmp_path / "notes.txt", ["hello there", "these are not reviews"])
    error = assert_clean_failure(
        prepare(path, tmp_path / "ws"), tmp_path / "ws", f"{path}:1:", "unknown format"
    )
    assert "--format" in error


def test_unknown_format_name(tmp_path):
    path = write_lines(tmp_path / "r.json", good_lines(3))
    error = assert_clean_failure(
        prepare(path, tmp_path / "ws", "--format", "amazon1999"), tmp_path / "ws"
    )
    assert "amazon1999" in error and "amazon2018" in error


def test_missing_table_column_lists_the_columns(tmp_path):
    path = write_lines(tmp_path / "t.csv", ["uid,iid,stars", "1,2,3"])
    error = assert_clean_failure(
        prepare(path, tmp_path / "ws", "--col-user", "uid", "--col-item", "item"),
        tmp_path / "ws",
        str(path),
    )
    assert "'uid', 'iid', 'stars'" in error and "--col-item" in error


def test_empty_after_filtering_is_a_clear_error(tmp_path):
    # Every user has 2 interactions: nothing survives a 5-core.
    path = write_json_lines(
        tmp_path / "r.json", [review(u, u + k) for u in range(20) for k in range(2)]
    )
    result = run_cli("prepare", path, "-w", tmp_path / "ws", "-q")
    assert_clean_failure(
        result, tmp_path / "ws", "empty after filtering", "--min-user-interactions"
    )


def test_empty_after_rating_filter_is_a_clear_error(tmp_path):
    path = write_json_lines(tmp_path / "r.json", [review(u, u, rating=1.0) for u in range(5)])
    result = run_cli("prepare", path, "-w", tmp_path / "ws", "-q")
    assert_clean_failure(result, tmp_path / "ws", "after the rating filter", "--min-rating")


def test_missing_input_file(tmp_path):
    result = prepare(tmp_path / "nope.json", tmp_path / "ws")
    assert_clean_failure(result, tmp_path / "ws", "nope.json", "file not found")


def test_encoding_option_is_the_remedy_for_a_latin1_file(tmp_path):
    lines = [
        json.dumps(review(k % 4, k % 3), ensure_ascii=False).replace('"review ', '"révïew ')
        for k in range(12)
    ]
    path = tmp_path / "latin1.json"
    path.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    assert_clean_failure(
        prepare(path, tmp_path / "ws", "--strict"), tmp_path / "ws", f"{path}:1:", "--encoding"
    )
    result = prepare(path, tmp_path / "ws", "--strict", "--encoding", "latin-1", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["counts"]["distinct_pairs"] == 12


def test_jsonl_table_with_a_broken_first_line(tmp_path):
    rows = ['{"uid": "u1", "iid": "i1", "sco'] + [
        json.dumps({"uid": f"u{k}", "iid": f"i{k % 3}"}) for k in range(9)
    ]
    path = write_lines(tmp_path / "t.jsonl", rows)
    result = prepare(path, tmp_path / "ws", "--col-user", "uid", "--col-item", "iid", "--json")
    assert result.exit_code == 0, result.stderr
    counts = json.loads(result.stdout)["counts"]
    assert counts["bad_lines"]["count"] == 1 and counts["bad_lines"]["examples"][0]["line"] == 1
    assert counts["distinct_pairs"] == 9
    assert_clean_failure(
        prepare(path, tmp_path / "ws2", "--strict"), tmp_path / "ws2", f"{path}:1:"
    )
