"""Command: ``explain`` (a user's top-k with motivations, prototypes and agreement)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from lmmrec_cli.cli.app import PANEL_TRAIN, app
from lmmrec_cli.cli.options import JsonOption, WorkspaceOption, open_workspace
from lmmrec_cli.console import print_json, stdout
from lmmrec_cli.errors import UsageError

if TYPE_CHECKING:  # the command imports torch (through explain) only when it runs
    from lmmrec_cli.explain import Explanation

SHOWN_PHRASES = 8  # per list in the terminal; --json has them all


def _phrases(
    phrases: list[str], matched: set[str] = frozenset(), limit: int = SHOWN_PHRASES
) -> str:
    if not phrases:
        return "[dim]none[/]"
    shown = [f"[bold green]{escape(p)}[/]" if p in matched else escape(p) for p in phrases[:limit]]
    more = f" [dim](+{len(phrases) - limit} more)[/]" if len(phrases) > limit else ""
    return ", ".join(shown) + more


def _prototype(entry: dict[str, Any]) -> str:
    loads = " / ".join(
        f"{entry[key]:.2f}×" for key in ("user_load", "item_load", "load") if key in entry
    )
    label = escape(", ".join(entry["label"])) if entry["label"] else "unlabelled"
    return f"#{entry['prototype']} {loads} ({label})"


def _print(result: Explanation) -> None:
    user = result.user
    shown = len(result.recommendations)
    top = f"top {result.k}" if shown >= result.k else (
        f"top {shown}: only {shown} of the {result.k} asked exist once the masked items are removed")
    stdout.print(
        f"[bold]{escape(user['id'])}[/] (user index {user['index']}, "
        f"{user['training_items']} training items) in {result.run}; "
        f"{top}; {' + '.join(result.masked)} items masked"
    )
    motivations = user["motivations"]
    if motivations is None:
        stdout.print(
            "[yellow]no motivations artifact for this dataset[/] (make one with `lmmrec motivate`)"
        )
    else:
        # all of the user's own: they are what every item below is matched against
        stdout.print(
            f"  seeks: {_phrases(motivations['active'], limit=len(motivations['active']))}"
        )
        stdout.print(
            f"  avoids: {_phrases(motivations['passive'], limit=len(motivations['passive']))}"
        )
        stdout.print(f"  [dim]motivations from {result.motivations} ({motivations['source']})[/]")
    prototypes = result.prototypes
    if prototypes["available"]:
        stdout.print(
            f"  loads most on: {'; '.join(_prototype(p) for p in prototypes['user_top'])}  "
            f"[dim](of {prototypes['count']} user prototypes; 1.00× = uniform)[/]"
        )
    else:
        stdout.print(f"  [yellow]prototypes unavailable:[/] {escape(prototypes['reason'])}")
    user_phrases = set(motivations["active"]) if motivations else set()
    for entry in result.recommendations:
        held = f", in the user's {entry['held_out']} split" if entry["held_out"] else ""
        name = escape(entry["title"] or entry["item_id"])
        title = (
            f"#{entry['rank']} {name} ({escape(entry['item_id'])}, "
            f"score {entry['score']:.3f}{held})"
        )
        table = Table(
            title=title, title_justify="left", show_header=False, box=None, padding=(0, 1)
        )
        table.add_column(style="bold", no_wrap=True)
        table.add_column(overflow="fold")
        item_motivations = entry["motivations"]
        if item_motivations is not None:
            table.add_row("offers", _phrases(item_motivations["active"], user_phrases))
            table.add_row("lacks", _phrases(item_motivations["passive"]))
            table.add_row("matches you", _phrases(entry["matched"]))
            if entry["conflicts"]:
                table.add_row("you avoid", f"[bold red]{_phrases(entry['conflicts'])}[/]")
        if entry["prototypes"] is not None:
            shared = entry["prototypes"]["shared"]
            table.add_row(
                "both load on",
                "; ".join(_prototype(p) for p in shared)
                if shared
                else "[dim]no prototype above uniform for both[/]",
            )
            table.add_row("agreement", f"{entry['agreement']:+.2f}")
        stdout.print(table)


_HELP_TEXT = """Why these items? A user's top-k with motivations, motivation prototypes and their
agreement.

Ranking: the run's best weights score every item for the user and the user's training items are
masked, exactly as `evaluate` ranks (same top-k, ties to the lower item index). Beside each item:
the user's active ("seeks") and passive ("avoids") motivations, the item's ("offers" / "lacks"),
the phrases both share (green) and the item's flaws the user avoids (red), from the motivations
artifact the run's text vectors were embedded from (a run without text: the newest of its
dataset, or --motivations).

LMMRec runs also show motivation prototypes (Eqs. 5-6). A loading is the weight vector of the
motivation-aware embedding p: the soft assignment softmax(x·z) of each propagation layer,
combined with the model's readout, normalised to sum 1. User and item are both read through the
user-side prototypes, the one vocabulary the explanation needs (x_i·z is how a user made of
prototype z alone would score the item). Loads print as multiples of uniform: 1.20× = 20% above
1/count. "Both load on": the prototypes where both load above uniform, largest
(user − uniform)·(item − uniform) first, each labelled with the user motivations typical of the
users that load most on it.

Agreement: the Pearson correlation of the user's and the item's loadings over the prototypes, in
[-1, 1] (1: they favour the same prototypes; 0: unrelated). Not the shared mass Σ min or a dot
product: these soft assignments are nearly flat (on the demo every pair shares over 95% of its
mass), so those would measure flatness, not agreement. On the demo, top-10 items average about
0.4 and random items about 0.1.

Runs with another plugin or none still list the top-k with motivations; prototypes are reported
unavailable.

Example: lmmrec explain --run demo-lightgcn-lmmrec-s0 --user diner_0000 --k 5
"""
# help= keeps line breaks (a docstring would not): rejoin each paragraph into one line
_HELP = "\n\n".join(" ".join(paragraph.split()) for paragraph in _HELP_TEXT.split("\n\n"))


@app.command("explain", rich_help_panel=PANEL_TRAIN, help=_HELP)
def explain_cmd(
    run: Annotated[
        str,
        typer.Option(
            "--run",
            "-r",
            help="Trained run: NAME, NAME@VERSION or a run directory.",
            show_default=False,
        ),
    ],
    user: Annotated[
        str | None,
        typer.Option(
            "--user",
            "-u",
            show_default=False,
            help="The user's original id (user_id in the dataset's users table); with --index, "
            "the internal index 0..n-1.",
        ),
    ] = None,
    k: Annotated[int, typer.Option("--k", help="Number of recommendations.")] = 10,
    index: Annotated[
        bool,
        typer.Option("--index", help="--user is the internal user index, not the original id."),
    ] = False,
    motivations: Annotated[
        str | None,
        typer.Option(
            "--motivations",
            "-M",
            show_default=False,
            help="Motivations NAME\\[@VERSION] to show (default: those the run's text vectors were "
            "embedded from, else the newest of its dataset).",
        ),
    ] = None,
    mask_valid: Annotated[
        bool,
        typer.Option(
            "--mask-valid",
            help="Also mask the user's validation items (default: training items only, as "
            "`evaluate`).",
        ),
    ] = False,
    list_users: Annotated[
        bool,
        typer.Option(
            "--list-users", help="List the run's users (index, id, training items) and exit."
        ),
    ] = False,
    device: Annotated[
        str,
        typer.Option("--device", help="auto, cpu, cuda or cuda:N (one user: the CPU is plenty)."),
    ] = "cpu",
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
) -> None:
    from lmmrec_cli.explain import explain, user_listing

    ws = open_workspace(workspace)
    if list_users:
        listing = user_listing(ws, run)
        if json_output:
            print_json(listing)
            return
        table = Table(title=f"users of {run}", header_style="bold")
        for column in ("index", "id", "training items"):
            table.add_column(column, justify="left" if column == "id" else "right")
        for row in listing:
            table.add_row(str(row["index"]), escape(row["id"]), str(row["training_items"]))
        stdout.print(table)
        return
    if user is None:
        raise UsageError(
            "--user is required",
            hint=f"pass --user ID; list the users with `lmmrec explain --run {run} --list-users`",
        )
    result = explain(
        ws,
        run,
        user,
        k=k,
        by_index=index,
        motivations=motivations,
        mask_valid=mask_valid,
        device=device,
    )
    if json_output:
        print_json(result.as_json())
        return
    _print(result)
