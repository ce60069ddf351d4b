"""The summary ``prepare`` prints after importing an RLMRec split (its counts differ from a
filtered-and-split dataset's: nothing is filtered, the checks are what matters)."""

from __future__ import annotations

from rich.table import Table

from lmmrec_cli.console import stderr, stdout
from lmmrec_cli.data.dataset import SPLITS
from lmmrec_cli.data.prepare import PrepareResult


def print_rlmrec_summary(result: PrepareResult) -> None:
    counts = result.counts
    labels = [result.ref.label, *(ref.label for ref in result.derived)]
    if result.reused:
        verb = "already exist" if len(labels) > 1 else "already exists"
        stdout.print(
            f"[green]up to date:[/] {', '.join(labels)} {verb} for these files; nothing to do."
        )
    else:
        stdout.print(f"[green]imported[/] {', '.join(labels)}  ({result.ref.path})")
    ids = counts.get("original_ids", {})
    stdout.print(
        "format [bold]rlmrec[/]; split kept as released (no filtering); "
        f"user ids: {ids.get('user', 'indices')}, item ids: {ids.get('item', 'indices')}"
    )
    table = Table(title="dataset summary", show_header=True, header_style="bold")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_row("users", f"{counts['users']:,}")
    table.add_row("items", f"{counts['items']:,}")
    for split_name in SPLITS:
        table.add_row(
            f"interactions: {split_name}", f"{counts['interactions'].get(split_name, 0):,}"
        )
    table.add_row("density", f"{counts['density']:.2e}")
    table.add_row(
        "users with ≥1 valid / test item",
        f"{counts['users_with_valid']:,} / {counts['users_with_test']:,}",
    )
    table.add_row(
        "users / items without a train item",
        f"{counts['users_without_train']:,} / {counts['items_without_train']:,}",
    )
    merged = {
        key: sum(notes.get(key, 0) for notes in counts.get("loading", {}).values())
        for key in ("duplicate_entries", "explicit_zeros", "values_not_one")
    }
    if any(merged.values()):
        table.add_row(
            "matrix entries: duplicate / zero / not 1.0",
            " / ".join(
                f"{merged[k]:,}" for k in ("duplicate_entries", "explicit_zeros", "values_not_one")
            ),
        )
    motivations = counts.get("motivations")
    if motivations:
        table.add_row(
            "profiles: users / items (missing)",
            " / ".join(
                f"{motivations[s]:,} ({motivations[s + '_missing']:,})" for s in ("users", "items")
            ),
        )
    embeddings = counts.get("embeddings")
    if embeddings:
        table.add_row(
            "text vectors: dim (zero rows u/i)",
            f"{embeddings['dim']} ({embeddings['users_missing']:,} / "
            f"{embeddings['items_missing']:,})",
        )
    text = counts.get("text")
    if text:
        _add_text_rows(table, text)
    stdout.print(table)
    print_text_warnings(result)


def print_text_warnings(result: PrepareResult) -> None:
    """Low-coverage warnings of joined dumps (kept in the manifest, so a rerun repeats them)."""
    for warning in result.counts.get("text", {}).get("warnings", []):
        stderr.print(f"[yellow]warning:[/] {warning}")


def _add_text_rows(table: Table, text: dict) -> None:
    """The coverage report of the joined dumps: what prompts can draw on, and what was left."""
    coverage = text["coverage"]
    labels = {
        "users": "users with a training review",
        "items": "items with text (training review or metadata)",
        "train_interactions": "training interactions with a review",
        "items_with_metadata": "items with metadata",
    }
    for key, label in labels.items():
        if key in coverage:
            part = coverage[key]
            table.add_row(label, f"{part['with_text']:,} of {part['total']:,} ({part['share']:.1%})")
    reviews = text.get("reviews")
    if reviews:
        for key, label in (
            ("pairs_matched", "split pairs with a raw review: train / valid / test"),
            ("pairs_matched_without_text", "  of which empty (no text)"),
            ("pairs_without_review", "split pairs without a raw review: train / valid / test"),
        ):
            if key != "pairs_matched_without_text" or any(reviews[key].values()):
                table.add_row(label, " / ".join(f"{reviews[key][s]:,}" for s in SPLITS))
        table.add_row("raw review records read", f"{reviews['records']:,}")
        table.add_row(
            "  ignored: user / item outside the split",
            f"{reviews['records_user_outside_split']:,} / {reviews['records_item_outside_split']:,}",
        )
        table.add_row(
            "  ignored: pair not in the split / repeated pair",
            f"{reviews['records_pair_not_in_split']:,} / {reviews['records_duplicate_pair']:,}",
        )
    meta = text.get("meta")
    if meta:
        table.add_row("metadata records read", f"{meta['records']:,}")
        table.add_row(
            "  ignored: item outside the split / repeated item",
            f"{meta['records_item_outside_split']:,} / {meta['records_duplicate_item']:,}",
        )
    bad = text.get("bad_lines", {})
    if bad.get("count"):
        table.add_row("unreadable lines skipped", f"{bad['count']:,}")
