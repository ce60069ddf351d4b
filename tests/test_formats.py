"""Each raw-format reader on small fixtures written here in the real schemas."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_cli, write_json_lines, write_lines

from lmmrec_cli.data.badlines import BadLines
from lmmrec_cli.data.formats import ReadOptions, all_formats, detect_source, format_by_name
from lmmrec_cli.data.pipeline import PrepareSettings
from lmmrec_cli.data.prepare import prepare
from lmmrec_cli.data.textio import numbered_lines, report_bytes_read
from lmmrec_cli.errors import InputError
from lmmrec_cli.workspace import Workspace

AMAZON_2014 = {
    "reviewerID": "A2IBPI20UZIR0U",
    "asin": "1384719342",
    "reviewerName": "cassandra",
    "helpful": [0, 0],
    "reviewText": "Filters out the pop sounds.",
    "overall": 5.0,
    "summary": "good",
    "unixReviewTime": 1393545600,
    "reviewTime": "02 28, 2014",
}
AMAZON_2018 = {
    "overall": 4.0,
    "verified": True,
    "reviewTime": "09 1, 2016",
    "reviewerID": "A3CIUOJXQ5VDQ2",
    "asin": "B0000530HU",
    "style": {"Size:": " 7.0 oz"},
    "reviewerName": "Shelly F",
    "reviewText": "As advertised. Reasonably priced",
    "summary": "Five Stars",
    "unixReviewTime": 1472688000,
}
AMAZON_2023 = {
    "rating": 5.0,
    "title": "Such a lovely scent",
    "text": "This spray is really nice.",
    "images": [],
    "asin": "B00YQ6X8EO",
    "parent_asin": "B00YQ6X8EO",
    "user_id": "AGKHLEW2SOWHNMFQIJGBECAF7INQ",
    "timestamp": 1588687728923,
    "helpful_vote": 0,
    "verified_purchase": True,
}
YELP_REVIEW = {
    "review_id": "KU_O5udG6zpxOg-VcAEodg",
    "user_id": "mh_-eMZ6K5RLWhZyISBhwA",
    "business_id": "XQfwVwDr-v0ZS3_CbbE5Xw",
    "stars": 3.0,
    "useful": 0,
    "funny": 0,
    "cool": 0,
    "text": "If you decide to eat here, just be aware it is going to take about 2 hours.",
    "date": "2018-07-07 22:09:11",
}
YELP_BUSINESS = {
    "business_id": "XQfwVwDr-v0ZS3_CbbE5Xw",
    "name": "Turning Point of North Wales",
    "city": "North Wales",
    "state": "PA",
    "stars": 3.0,
    "review_count": 169,
    "is_open": 1,
    "attributes": {
        "NoiseLevel": "u'average'",
        "RestaurantsPriceRange2": "2",
        "OutdoorSeating": "False",
        "BusinessParking": "{'garage': False, 'street': False, 'validated': False, 'lot': True}",
        "HasTV": "None",
    },
    "categories": "Restaurants, Breakfast & Brunch, Food",
    "hours": None,
}
STEAM_USER = (
    "{'user_id': '76561197970982479', 'user_url': 'http://steamcommunity.com/profiles/76561197970982479', "
    "'reviews': [{'funny': '', 'posted': 'Posted November 5, 2011.', 'last_edited': '', 'item_id': '1250', "
    "'helpful': 'No ratings yet', 'recommend': True, 'review': u'Simple yet with great replayability.'}, "
    "{'funny': '', 'posted': 'Posted July 15.', 'last_edited': '', 'item_id': '22200', "
    "'helpful': 'No ratings yet', 'recommend': False, 'review': 'It\\'s unique.'}]}"
)
STEAM_V2 = (
    "{u'username': u'Chaos Syren', u'hours': 0.1, u'products': 41, u'product_id': u'725280', "
    "u'page_order': 0, u'date': u'2017-12-17', u'text': u'This would not be acceptable as an entertainment.', "
    "u'early_access': False, u'page': 1}"
)
STEAM_GAME = (
    "{u'publisher': u'Kotoshiro', u'genres': [u'Action', u'Casual'], u'app_name': u'Lost Summoner Kitty', "
    "u'title': u'Lost Summoner Kitty', u'url': u'http://store.steampowered.com/app/761140/Lost_Summoner_Kitty/', "
    "u'tags': [u'Strategy', u'Action'], u'specs': [u'Single-player'], u'price': 4.99, u'early_access': False, "
    "u'id': u'725280', u'developer': u'Kotoshiro'}"
)


def read_all(
    format_name: str, path: Path, options: ReadOptions = ReadOptions(), items: bool = False
):
    fmt = format_by_name(format_name)()
    bad = BadLines("skip")
    reader = fmt.read_items if items else fmt.read_reviews
    return list(reader(path, options, bad)), bad


# -- detection ------------------------------------------------------------------------------


def _fixture(tmp_path: Path, kind: str) -> Path:
    if kind == "amazon2014":
        return write_json_lines(tmp_path / "reviews_Books_5.json", [AMAZON_2014])
    if kind == "amazon2018":
        return write_json_lines(tmp_path / "All_Beauty_5.json.gz", [AMAZON_2018], gz=True)
    if kind == "amazon2023":
        return write_json_lines(tmp_path / "All_Beauty.jsonl", [AMAZON_2023])
    if kind == "yelp":
        return write_json_lines(tmp_path / "yelp_academic_dataset_review.json", [YELP_REVIEW])
    if kind == "steam":
        return write_lines(tmp_path / "steam_reviews.json.gz", [STEAM_V2], gz=True)
    if kind == "recbole":
        return write_lines(
            tmp_path / "ml.inter", ["user_id:token\titem_id:token\trating:float", "1\t2\t5"]
        )
    if kind == "jsonl":
        return write_json_lines(tmp_path / "t.jsonl", [{"uid": "u", "iid": "i"}])
    if kind == "tsv":
        return write_lines(tmp_path / "t.tsv", ["userId\tmovieId\trating", "1\t2\t4.5"])
    if kind == "csv":
        return write_lines(tmp_path / "t.csv", ["userId,movieId,rating", "1,2,4.5"])
    if kind == "parquet":
        path = tmp_path / "t.parquet"
        pq.write_table(pa.table({"user_id": ["u"], "item_id": ["i"]}), str(path))
        return path
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "amazon2014",
        "amazon2018",
        "amazon2023",
        "yelp",
        "steam",
        "recbole",
        "jsonl",
        "tsv",
        "csv",
        "parquet",
    ],
)
def test_format_is_detected_from_first_lines(tmp_path, kind):
    fmt, source = detect_source([_fixture(tmp_path, kind)], [], None)
    assert fmt.name == kind
    assert len(source.reviews) == 1


def test_every_format_is_registered_once_with_a_description():
    names = [f.name for f in all_formats()]
    assert len(names) == len(set(names)) == 10
    assert all(f.description for f in all_formats())


def test_format_option_overrides_detection(tmp_path):
    path = write_lines(tmp_path / "t.csv", ["userId,movieId,rating", "1,2,4.5"])
    fmt, _ = detect_source([path], [], "tsv")
    assert fmt.name == "tsv"


def test_metadata_given_as_reviews_is_explained(tmp_path):
    meta = write_json_lines(
        tmp_path / "meta.json", [{"asin": "B1", "title": "T", "category": ["C"]}]
    )
    with pytest.raises(InputError, match="looks like item metadata.*--meta"):
        detect_source([meta], [], None)


def test_paper_rating_defaults():
    assert format_by_name("amazon2014").default_min_rating == 3
    assert format_by_name("amazon2018").default_min_rating == 3
    assert format_by_name("amazon2023").default_min_rating == 3
    assert format_by_name("yelp").default_min_rating == 2
    assert format_by_name("steam").default_min_rating is None


# -- Amazon ---------------------------------------------------------------------------------


def test_amazon_2014_and_2018_reviews(tmp_path):
    reviews, bad = read_all("amazon2014", _fixture(tmp_path, "amazon2014"))
    assert bad.count == 0
    (review,) = reviews
    assert (review.user_id, review.item_id, review.rating) == ("A2IBPI20UZIR0U", "1384719342", 5.0)
    assert (review.timestamp, review.summary, review.line) == (1393545600, "good", 1)
    assert review.text == "Filters out the pop sounds."
    (review,) = read_all("amazon2018", _fixture(tmp_path, "amazon2018"))[0]
    assert (review.user_id, review.item_id, review.rating, review.summary) == (
        "A3CIUOJXQ5VDQ2",
        "B0000530HU",
        4.0,
        "Five Stars",
    )


def test_amazon_2023_uses_parent_asin_and_milliseconds(tmp_path):
    record = {**AMAZON_2023, "asin": "B00VARIANT"}
    (review,), _ = read_all("amazon2023", write_json_lines(tmp_path / "r.jsonl", [record]))
    assert review.item_id == "B00YQ6X8EO"
    assert review.timestamp == 1588687728
    assert (review.summary, review.text) == ("Such a lovely scent", "This spray is really nice.")


def test_amazon_2014_meta_is_python_literal_and_never_evaluated(tmp_path):
    marker = tmp_path / "pwned"
    path = write_lines(
        tmp_path / "meta_Books.json.gz",
        [
            "{'asin': '0001', 'title': 'A Book &amp; More', "
            "'categories': [['Books', 'Fiction'], ['Books', 'Mystery']], "
            "'description': 'A <b>great</b> read.', 'salesRank': {'Books': 5}, 'brand': u'Pub'}",
            f"__import__('pathlib').Path({str(marker)!r}).touch()",
        ],
        gz=True,
    )
    items, bad = read_all("amazon2014", path, items=True)
    assert not marker.exists()
    assert bad.count == 1 and bad.examples[0]["line"] == 2
    (item,) = items
    assert item.title == "A Book & More"
    assert (
        item.text == "Brand: Pub. Categories: Books, Fiction, Mystery. Description: A great read."
    )


def test_amazon_2018_meta_strips_html_titles(tmp_path):
    path = write_json_lines(
        tmp_path / "meta.json",
        [
            {
                "asin": "B1",
                "title": '<span class="a-size-medium a-color-secondary"',
                "category": ["Magazines", "Arts &amp; Music"],
                "description": ["Written by musicians.", "", ""],
                "brand": "String Letter",
                "feature": ["Monthly"],
                "details": {"Format:": "Print Magazine", "ASIN: ": "B1", "Shipping: ": "US only"},
            },
            {"asin": "B2", "title": "PC World"},
        ],
    )
    items, _ = read_all("amazon2018", path, items=True)
    assert [i.title for i in items] == ["", "PC World"]
    assert items[0].text == (
        "Brand: String Letter. Categories: Magazines, Arts & Music. Features: Monthly. "
        "Description: Written by musicians. Details: Format Print Magazine."
    )


def test_amazon_2023_meta(tmp_path):
    path = write_json_lines(
        tmp_path / "meta.jsonl",
        [
            {
                "main_category": "All Beauty",
                "title": "Howard LC0008 Leather Conditioner",
                "features": ["Restores"],
                "description": [],
                "categories": [],
                "details": {"Brand": "Howard"},
                "parent_asin": "B01CUPMQZE",
                "store": "Howard",
            }
        ],
    )
    (item,), _ = read_all("amazon2023", path, items=True)
    assert (item.item_id, item.title) == ("B01CUPMQZE", "Howard LC0008 Leather Conditioner")
    assert item.text == "Brand: Howard. Features: Restores. Details: Brand Howard."


# -- Yelp -----------------------------------------------------------------------------------


def test_yelp_directory_review_and_business(tmp_path):
    write_json_lines(tmp_path / "yelp_academic_dataset_review.json", [YELP_REVIEW])
    write_json_lines(tmp_path / "yelp_academic_dataset_business.json", [YELP_BUSINESS])
    fmt, source = detect_source([tmp_path], [], None)
    assert fmt.name == "yelp"
    assert [p.name for p in source.meta] == ["yelp_academic_dataset_business.json"]
    (review,), _ = read_all("yelp", source.reviews[0])
    assert (review.rating, review.timestamp) == (3.0, 1531001351)
    (item,), _ = read_all("yelp", source.meta[0], items=True)
    assert item.title == "Turning Point of North Wales"
    assert item.text == (
        "Categories: Restaurants, Breakfast & Brunch, Food. Location: North Wales, PA. "
        "Attributes: noise level: average; price range (1-4): 2; outdoor seating: no; business parking: lot."
    )


# -- Steam ----------------------------------------------------------------------------------


def test_steam_user_records_become_one_review_each(tmp_path):
    path = write_lines(tmp_path / "australian_user_reviews.json", [STEAM_USER])
    reviews, bad = read_all("steam", path)
    assert bad.count == 0
    assert [(r.user_id, r.item_id, r.rating) for r in reviews] == [
        ("76561197970982479", "1250", None),
        ("76561197970982479", "22200", None),
    ]
    assert reviews[0].timestamp == 1320451200  # 2011-11-05 UTC
    assert reviews[1].timestamp is None  # "Posted July 15." has no year
    assert reviews[1].text == "It's unique."


def test_steam_v2_reviews_and_games_meta(tmp_path):
    (review,), _ = read_all("steam", _fixture(tmp_path, "steam"))
    assert (review.user_id, review.item_id, review.timestamp) == (
        "Chaos Syren",
        "725280",
        1513468800,
    )
    no_id = "{'url': 'http://store.steampowered.com/app/200260', 'app_name': 'Batman', 'tags': ['Action']}"
    useless = "{'url': 'http://store.steampowered.com/', 'price': 19.99}"
    items, bad = read_all(
        "steam",
        write_lines(tmp_path / "steam_games.json", [STEAM_GAME, no_id, useless]),
        items=True,
    )
    assert [(i.item_id, i.title) for i in items] == [
        ("725280", "Lost Summoner Kitty"),
        ("200260", "Batman"),
    ]
    assert items[0].text == (
        "Genres: Action, Casual. Tags: Strategy, Action. Features: Single-player. "
        "Developer: Kotoshiro. Publisher: Kotoshiro."
    )
    assert bad.count == 1 and bad.examples[0]["line"] == 3


# -- generic tables -------------------------------------------------------------------------


def test_csv_with_quoted_multiline_text_and_iso_dates(tmp_path):
    path = write_lines(
        tmp_path / "ratings.csv",
        [
            "uid,iid,stars,review,when",
            'u1,i1,4,"good, and\nlong",2020-01-02',
            "u2,i2,,plain,1577923200",
        ],
    )
    options = ReadOptions(
        col_user="uid", col_item="iid", col_rating="stars", col_text="review", col_timestamp="when"
    )
    reviews, bad = read_all("csv", path, options)
    assert bad.count == 0
    assert [(r.user_id, r.item_id, r.rating, r.text, r.timestamp) for r in reviews] == [
        ("u1", "i1", 4.0, "good, and\nlong", 1577923200),
        ("u2", "i2", None, "plain", 1577923200),
    ]
    assert [r.line for r in reviews] == [3, 4]


def test_table_columns_are_guessed_from_common_names(tmp_path):
    reviews, _ = read_all("tsv", _fixture(tmp_path, "tsv"))
    assert [(r.user_id, r.item_id, r.rating) for r in reviews] == [("1", "2", 4.5)]


def test_missing_column_names_the_columns_that_exist(tmp_path):
    path = _fixture(tmp_path, "csv")
    with pytest.raises(InputError, match=r"no column 'user'.*'userId', 'movieId', 'rating'"):
        read_all("csv", path, ReadOptions(col_user="user"))
    path = write_lines(tmp_path / "odd.csv", ["a,b", "1,2"])
    with pytest.raises(InputError, match=r"user id; the file has: 'a', 'b' \(pass --col-user"):
        read_all("csv", path)


def test_jsonl_and_parquet_tables(tmp_path):
    path = write_json_lines(tmp_path / "t.jsonl", [{"uid": "u", "iid": 7, "score": 3, "ts": 5}])
    options = ReadOptions(col_user="uid", col_item="iid", col_rating="score", col_timestamp="ts")
    (review,), _ = read_all("jsonl", path, options)
    assert (review.user_id, review.item_id, review.rating, review.timestamp) == ("u", "7", 3.0, 5)
    path = tmp_path / "t.parquet"
    pq.write_table(
        pa.table(
            {
                "user_id": ["a", "b"],
                "item_id": [1, 2],
                "rating": [1.0, None],
                "timestamp": pa.array([0, 86_400_000_000], type=pa.timestamp("us")),
            }
        ),
        str(path),
    )
    calls: list[int] = []
    with report_bytes_read(calls.append):
        reviews, _ = read_all("parquet", path)
    assert sum(calls) == path.stat().st_size
    assert [(r.user_id, r.item_id, r.rating, r.timestamp, r.line) for r in reviews] == [
        ("a", "1", 1.0, 0, 1),
        ("b", "2", None, 86_400, 2),
    ]


def test_item_table_text_from_other_columns(tmp_path):
    path = write_lines(
        tmp_path / "movies.csv",
        ["movieId,title,genres,year", "1,Toy Story (1995),Animation|Comedy,1995"],
    )
    (item,), _ = read_all("csv", path, items=True)
    assert (item.item_id, item.title, item.text) == (
        "1",
        "Toy Story (1995)",
        "Genres: Animation|Comedy. Year: 1995.",
    )
    (item,), _ = read_all("csv", path, ReadOptions(col_item_text="genres"), items=True)
    assert item.text == "Animation|Comedy"


# -- RecBole --------------------------------------------------------------------------------


def test_recbole_atomic_files(tmp_path):
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    write_lines(
        folder / "ml-100k.inter",
        [
            "user_id:token\titem_id:token\trating:float\ttimestamp:float",
            "196\t242\t3\t881250949",
            "186\t302\t3\t891717742",
        ],
    )
    write_lines(
        folder / "ml-100k.item",
        [
            "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq",
            "242\tKolya\t1996\tComedy",
            "302\tL.A. Confidential\t1997\tCrime Film-Noir",
        ],
    )
    write_lines(folder / "ml-100k.user", ["user_id:token\tage:token", "196\t49"])
    fmt, source = detect_source([folder], [], None)
    assert fmt.name == "recbole"
    assert [p.name for p in source.reviews] == ["ml-100k.inter"]
    assert [p.name for p in source.meta] == ["ml-100k.item"]
    reviews, _ = read_all("recbole", source.reviews[0])
    assert [(r.user_id, r.item_id, r.rating, r.timestamp) for r in reviews] == [
        ("196", "242", 3.0, 881250949),
        ("186", "302", 3.0, 891717742),
    ]
    items, _ = read_all("recbole", source.meta[0], items=True)
    assert [(i.item_id, i.title, i.text) for i in items] == [
        ("242", "Kolya", "Release year: 1996. Class: Comedy."),
        ("302", "L.A. Confidential", "Release year: 1997. Class: Crime Film-Noir."),
    ]


def test_recbole_header_must_be_typed(tmp_path):
    path = write_lines(tmp_path / "x.inter", ["user_id:token\titem_id:str", "1\t2"])
    with pytest.raises(InputError, match="NAME:TYPE"):
        read_all("recbole", path)


# -- progress -------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_progress_hook_counts_bytes_of_the_file_on_disk(tmp_path, gz, monkeypatch):
    monkeypatch.setattr("lmmrec_cli.data.textio.PROGRESS_EVERY", 10)
    path = write_json_lines(
        tmp_path / "r.json", [dict(AMAZON_2018, asin=str(k)) for k in range(95)], gz=gz
    )
    calls: list[int] = []
    with report_bytes_read(calls.append):
        lines = list(numbered_lines(path, BadLines()))
    assert len(lines) == 95
    assert len(calls) == 10  # every 10 lines, and once at the end
    assert sum(calls) == path.stat().st_size
    assert path.read_bytes()[:2] == (b"\x1f\x8b" if gz else b'{"')


def test_cli_prepares_a_csv_end_to_end(tmp_path):
    rows = ["user,item,rating"] + [
        f"u{u},i{(u + k) % 7},{1 + (u * k) % 5}" for u in range(12) for k in range(6)
    ]
    path = write_lines(tmp_path / "ratings.csv", rows)
    result = run_cli(
        "prepare",
        path,
        "-w",
        tmp_path / "ws",
        "--min-user-interactions",
        "2",
        "--min-item-interactions",
        "2",
        "--json",
    )
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)["counts"]
    assert (counts["users"], counts["items"], counts["distinct_pairs"]) == (12, 7, 72)
    assert json.loads(result.stdout)["format"] == "csv"


class _RecordingProgress:
    """A Progress stand-in that records each task's total and the amounts advanced."""

    def __init__(self) -> None:
        self.tasks: dict[str, dict] = {}
        self.enabled = True

    @contextmanager
    def task(self, description: str, total: float | None = None, unit: str = ""):
        record = self.tasks.setdefault(description, {"total": total, "done": 0.0})

        class _Task:
            def advance(self, amount: float = 1) -> None:
                record["done"] += amount

            def update(self, **_: object) -> None:
                pass

            def set_postfix(self, text: str) -> None:
                pass

        yield _Task()

    def note(self, message: str) -> None:
        pass


def test_prepare_reports_reading_progress_in_file_bytes(tmp_path, monkeypatch):
    monkeypatch.setattr("lmmrec_cli.data.textio.PROGRESS_EVERY", 7)
    records = [dict(AMAZON_2018, reviewerID=f"U{k % 9}", asin=f"B{k % 6}") for k in range(120)]
    path = write_json_lines(tmp_path / "Beauty_5.json.gz", records, gz=True)
    progress = _RecordingProgress()
    prepare(
        Workspace(tmp_path / "ws"),
        paths=[path],
        meta=[],
        format_name=None,
        name=None,
        settings=PrepareSettings(min_user_interactions=1, min_item_interactions=1),
        min_rating_given=False,
        progress=progress,  # type: ignore[arg-type]
    )
    reading = progress.tasks["reading"]
    assert reading["total"] == path.stat().st_size
    assert reading["done"] == path.stat().st_size
