"""RLMRec id-mapper files: sides, checks, and directory resolution."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmmrec_cli.data.rlmrec_mapper import read_mapper, resolve_mappers
from lmmrec_cli.errors import InputError, UsageError


def NO_SHAPE() -> tuple[int, int]:  # noqa: N802 - a constant-like stand-in
    raise AssertionError("the split's shape is needed only for a directory of several pairs")


def test_reads_any_raw_id_field_in_index_order(tmp_path: Path) -> None:
    path = tmp_path / "steam_user.json"
    path.write_text('{"uid": 1, "username": "\\u2620Pirate"}\n\n{"uid": 0, "username": "Muffin"}')
    mapper = read_mapper(path)
    assert (mapper.side, mapper.id_field, mapper.ids) == ("user", "username", ["Muffin", "☠Pirate"])


@pytest.mark.parametrize(
    "text, problem",
    [
        ('{"iid": 0, "asin": "a"}\n{"iid": 0, "asin": "b"}', ":2: index 0 appears twice"),
        ('{"iid": 0, "asin": "a"}\n{"iid": 1, "asin": "a"}', ":2: asin 'a' maps two indices"),
        ('{"iid": 0, "asin": "a"}\n{"iid": 2, "asin": "c"}', "index 1 is missing"),
        ('{"iid": 0, "asin": "a"}\n{"iid": 1', ":2: not JSON"),
        ('{"iid": 0, "asin": "a", "title": "t"}', ":1: expected"),
        ('{"iid": -1, "asin": "a"}', ":1: iid must be a non-negative integer"),
        ('{"iid": 0, "asin": "a"}\n{"uid": 1, "reviewerID": "u"}', ":2: mixes record kinds"),
        ("", "the id-mapper file is empty"),
    ],
)
def test_bad_mappers_are_located_input_errors(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "x_item.json"
    path.write_text(text)
    with pytest.raises(InputError) as caught:
        read_mapper(path)
    assert problem in caught.value.one_line()


def test_non_utf8_mapper_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "x_user.json"
    path.write_bytes(b'{"uid": 0, "reviewerID": "\xff"}')
    with pytest.raises(InputError, match="not UTF-8"):
        resolve_mappers([path], tmp_path, NO_SHAPE)


def test_two_mappers_of_one_side_are_refused(tmp_path: Path) -> None:
    first, second = tmp_path / "a_user.json", tmp_path / "b_user.json"
    first.write_text('{"uid": 0, "reviewerID": "u"}')
    second.write_text('{"uid": 0, "user_id": "v"}')
    with pytest.raises(UsageError, match="two user id mappers"):
        resolve_mappers([first, second], tmp_path, NO_SHAPE)


def test_directory_pair_is_chosen_by_the_split_shape(tmp_path: Path) -> None:
    for name, users, items in (("amazon", 3, 2), ("steam", 2, 3), ("yelp", 3, 3)):
        (tmp_path / f"{name}_user.json").write_text(
            "\n".join(f'{{"uid": {k}, "u": "{name}{k}"}}' for k in range(users))
        )
        (tmp_path / f"{name}_item.json").write_text(
            "\n".join(f'{{"iid": {k}, "i": "{name}{k}"}}' for k in range(items))
        )
    chosen = resolve_mappers([tmp_path], tmp_path / "amazon-book", lambda: (2, 3))
    assert {side: p.name for side, p in chosen.items()} == {
        "user": "steam_user.json",
        "item": "steam_item.json",
    }
    with pytest.raises(UsageError, match=r"none has the split's 4 users × 4 items"):
        resolve_mappers([tmp_path], tmp_path / "amazon", lambda: (4, 4))
