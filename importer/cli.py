"""Importer commands for the ``crmsync`` CLI (registered by ``backend/cli.py``).

* ``crmsync import FILE --entity account``: bulk import of a CSV or JSONL file;
* ``crmsync reconcile [--entity E] [--repair]``: compare Dynamics with the store;
* ``crmsync importer run``: full load, then deltas and writeback until SIGINT/SIGTERM;
* ``crmsync importer load [--restart]``: the full load only;
* ``crmsync importer status``: where each entity's sync stands;
* ``crmsync importer dead-letters`` / ``retry ID`` / ``discard ID``: writeback dead letters.

Every command reads the shared configuration (``--config``, ``$CRMSYNC_CONFIG`` or
``./crmsync.toml``) and ``CRMSYNC_DYNAMICS_*`` variables. Typed errors are shown as
``Error: <code>: <message>`` with exit code 2 (configuration) or 1 (run time).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

T = TypeVar("T")

_config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="Configuration file (default: $CRMSYNC_CONFIG or ./crmsync.toml).",
)


@contextmanager
def _typed_errors(exit_code: int = 1) -> Iterator[None]:
    """Show an error with a stable ``code`` as one line instead of a traceback."""
    try:
        yield
    except click.ClickException:
        raise
    except Exception as e:
        code = getattr(e, "code", None)
        if not isinstance(code, str):
            raise
        click.echo(f"Error: {code}: {e}", err=True)
        raise SystemExit(exit_code) from e


def _settings(config_path: str | None) -> Any:
    from .runtime import load_settings

    with _typed_errors(2):
        return load_settings(config_path)


def _run(coro_factory: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await coro_factory()

    with _typed_errors(1):
        return asyncio.run(main())


# ---------------------------------------------------------------------------- import


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--entity", required=True, help="Target entity (account, contact, ...).")
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "jsonl"]), default=None, help="Default: suffix."
)
@click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Reject report path (default: FILE.rejects.csv).",
)
@click.option("--force", is_flag=True, help="Publish again even if FILE was imported before.")
@click.option("--ignore-unknown", is_flag=True, help="Skip columns the entity does not have.")
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Wait until the applier has applied every batch.",
)
@click.option("--timeout", default=600.0, show_default=True, help="Seconds to wait for --wait.")
@_config_option
def import_command(
    file: Path,
    entity: str,
    fmt: str | None,
    report: Path | None,
    force: bool,
    ignore_unknown: bool,
    wait: bool,
    timeout: float,
    config_path: str | None,
) -> None:
    """Import a CSV or JSONL FILE into ENTITY: valid rows applied, bad rows reported."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    from .publisher import wait_applied
    from .runtime import ImporterRuntime

    settings = _settings(config_path)

    async def go() -> int:
        runtime = ImporterRuntime(settings)
        await runtime.start(dynamics=False)
        try:
            with Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                DownloadColumn(),
                TimeRemainingColumn(),
                transient=True,
                disable=not sys.stderr.isatty(),
            ) as bar:
                task = bar.add_task(f"importing {file.name}", total=None)

                def progress(done: int, total: int) -> None:
                    bar.update(task, completed=done, total=total)

                result = await runtime.files.run(
                    file,
                    entity,
                    fmt=fmt,
                    report_path=report,
                    force=force,
                    ignore_unknown=ignore_unknown,
                    progress=progress,
                )
            applied = True
            if wait and result.batch_ids and not result.already_done:
                applied = await wait_applied(runtime.store, result.batch_ids, timeout_s=timeout)
        finally:
            await runtime.close()
        if result.already_done:
            click.echo(f"{file.name} was already imported into {entity}: nothing to do.")
        click.echo(
            f"{result.rows} rows: {result.valid} imported, {result.rejected} rejected"
            + (f" (report: {result.report_path})" if result.rejected else "")
        )
        if not applied:
            click.echo("warning: not every batch was applied before the timeout", err=True)
            return 1
        return 0

    raise SystemExit(_run(go))


# ---------------------------------------------------------------------------- reconcile


@click.command("reconcile")
@click.option(
    "--entity", "entities", multiple=True, help="Entity to check (repeatable; default all)."
)
@click.option("--repair", is_flag=True, help="Publish fixes so the store matches Dynamics.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report.")
@_config_option
def reconcile_command(
    entities: tuple[str, ...], repair: bool, as_json: bool, config_path: str | None
) -> None:
    """Compare Dynamics and the store per entity: missing, extra and divergent records."""
    from .runtime import ImporterRuntime

    settings = _settings(config_path)

    async def go() -> dict[str, Any]:
        async with ImporterRuntime(settings) as runtime:
            names = list(entities) or list(settings.importer.entities)
            reports = await runtime.reconciler.reconcile_all(names, repair=repair)
            return {name: r.summary() for name, r in reports.items()}

    reports = _run(go)
    if as_json:
        click.echo(json.dumps(reports, indent=2, ensure_ascii=False))
    else:
        head = ("entity", "dynamics", "store", "missing", "extra", "divergent")
        click.echo("{:<12} {:>9} {:>9} {:>8} {:>8} {:>9}".format(*head))
        for name, r in reports.items():
            click.echo(
                f"{name:<12} {r['dynamics']:>9} {r['store']:>9} {r['missing']:>8} "
                f"{r['extra']:>8} {r['divergent']:>9}"
            )
    differences = sum(r["missing"] + r["extra"] + r["divergent"] for r in reports.values())
    raise SystemExit(0 if differences == 0 or repair else 3)


# ---------------------------------------------------------------------------- importer group


@click.group("importer")
def importer_group() -> None:
    """The Dynamics 365 connector: load, follow changes, write back device changes."""


@importer_group.command("run")
@_config_option
@click.option("--no-writeback", is_flag=True, help="Only read from Dynamics.")
def run_command(config_path: str | None, no_writeback: bool) -> None:
    """Full load (resumed if interrupted), then deltas and writeback until SIGINT/SIGTERM."""
    from backend.observability import configure_logging

    from .runtime import ImporterRuntime

    settings = _settings(config_path)
    configure_logging(settings.log_level, json_logs=settings.log_json)

    async def go() -> None:
        from backend.applier.runner import install_stop_signals

        stop = asyncio.Event()
        install_stop_signals(stop)
        async with ImporterRuntime(settings) as runtime:
            await runtime.run(stop, writeback=not no_writeback)

    _run(go)


@importer_group.command("load")
@_config_option
@click.option("--restart", is_flag=True, help="Start over instead of resuming.")
@click.option("--entity", "entities", multiple=True, help="Entity to load (repeatable).")
def load_command(config_path: str | None, restart: bool, entities: tuple[str, ...]) -> None:
    """Run the full load only (resumes from the last checkpoint unless --restart)."""
    from .runtime import ImporterRuntime

    settings = _settings(config_path)

    async def go() -> dict[str, Any]:
        async with ImporterRuntime(settings) as runtime:
            stats = await runtime.loader.load(list(entities) or None, restart=restart)
            return {e: (s.records, s.pages, s.seconds, s.already_loaded) for e, s in stats.items()}

    for entity, (records, pages, seconds, done) in _run(go).items():
        note = " (already loaded)" if done else ""
        click.echo(f"{entity:<12} {records:>9} records {pages:>6} pages {seconds:8.1f}s{note}")


@importer_group.command("status")
@_config_option
def status_command(config_path: str | None) -> None:
    """Show each entity's sync phase, progress and dead-letter count."""
    from .runtime import ImporterRuntime
    from .state import EntitySync, sync_key

    settings = _settings(config_path)

    async def go() -> tuple[dict[str, EntitySync | None], int]:
        runtime = ImporterRuntime(settings)
        await runtime.start(dynamics=False)
        try:
            out = {
                e: await runtime.state.get(sync_key(e), EntitySync)
                for e in settings.importer.entities
            }
            return out, len(await runtime.writeback.dead_letters())
        finally:
            await runtime.close()

    states, dead = _run(go)
    for entity, st in states.items():
        if st is None:
            click.echo(f"{entity:<12} not loaded")
        else:
            click.echo(
                f"{entity:<12} {st.phase:<6} {st.records:>9} records {st.pages:>6} pages"
                f" loads={st.full_loads}"
            )
    click.echo(f"dead letters: {dead}")


@importer_group.command("dead-letters")
@_config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def dead_letters_command(config_path: str | None, as_json: bool) -> None:
    """List device changes writeback gave up on."""
    import msgspec

    from .runtime import ImporterRuntime

    settings = _settings(config_path)

    async def go() -> list[Any]:
        runtime = ImporterRuntime(settings)
        await runtime.start(dynamics=False)
        try:
            return await runtime.writeback.dead_letters()
        finally:
            await runtime.close()

    letters = _run(go)
    if as_json:
        click.echo(msgspec.json.encode(letters).decode())
        return
    for d in letters:
        c = d.change
        click.echo(f"{c.change_id}  {c.entity} {c.id} {c.op}  {d.code}  attempts={d.attempts}")
    click.echo(f"{len(letters)} dead letters")


@importer_group.command("retry")
@click.argument("change_id")
@_config_option
def retry_command(change_id: str, config_path: str | None) -> None:
    """Write a dead-lettered change again (it leaves the list on success)."""
    from .runtime import ImporterRuntime

    settings = _settings(config_path)

    async def go() -> str:
        async with ImporterRuntime(settings) as runtime:
            return (await runtime.writeback.retry_dead_letter(change_id)).status

    click.echo(f"{change_id}: {_run(go)}")


@importer_group.command("discard")
@click.argument("change_id")
@_config_option
def discard_command(change_id: str, config_path: str | None) -> None:
    """Drop a dead-lettered change without writing it."""
    from .runtime import ImporterRuntime

    settings = _settings(config_path)

    async def go() -> None:
        runtime = ImporterRuntime(settings)
        await runtime.start(dynamics=False)
        try:
            await runtime.writeback.discard_dead_letter(change_id)
        finally:
            await runtime.close()

    _run(go)
    click.echo(f"{change_id}: discarded")


COMMANDS: tuple[click.Command, ...] = (import_command, reconcile_command, importer_group)
"""What ``backend/cli.py`` registers: ``for c in COMMANDS: main.add_command(c)``."""
