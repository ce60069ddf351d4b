"""The Typer application object and its error handling; commands live in sibling modules."""

from __future__ import annotations

import typer
from rich.markup import escape
from typer.core import TyperGroup

from lmmrec_cli import __version__
from lmmrec_cli.console import stderr
from lmmrec_cli.errors import LmmrecError, environment_error

PANEL_DATA = "Data"
PANEL_TEXT = "Motivations (LLM)"
PANEL_TRAIN = "Train and evaluate"
PANEL_EXPERIMENTS = "Experiments"
PANEL_WORKSPACE = "Workspace"


class LmmrecGroup(TyperGroup):
    """Turns an :class:`LmmrecError` (or an OS refusal) into one line on stderr and a non-zero exit code."""

    def invoke(self, ctx):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except LmmrecError as error:
            self._fail(ctx, error)
        except OSError as error:
            # The machine refused (permission, full disk, a name too long): the user's to fix,
            # so one line naming the file. An OSError without errno is a bug: keep its traceback.
            if error.errno is None:
                raise
            self._fail(ctx, environment_error(error))

    @staticmethod
    def _fail(ctx, error: LmmrecError) -> None:
        # escape: messages quote user text and option values such as 'lmmrec[extra]'
        stderr.print(f"[bold red]error:[/] {escape(error.one_line())}", markup=True, highlight=False)
        ctx.exit(error.exit_code)

    def list_commands(self, ctx):  # keep the order commands are declared in, not alphabetical
        return list(self.commands)


app = typer.Typer(
    name="lmmrec",
    cls=LmmrecGroup,
    help=(
        "LLM-driven, motivation-aware recommendation.\n\n"
        "Typical flow: [bold]prepare[/] raw reviews → [bold]motivate[/] (LLM motivations) → "
        "[bold]embed[/] → [bold]train[/] a graph model with the LMMRec plugin → [bold]evaluate[/]. "
        "Every step writes a versioned artifact into the workspace (--workspace, "
        "$LMMREC_WORKSPACE, or ./lmmrec-work) and re-running a finished step does nothing."
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"lmmrec {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """LLM-driven, motivation-aware recommendation."""
