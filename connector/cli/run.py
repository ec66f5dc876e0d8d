"""Long-running processes: `serve` (one machine: web, worker and clock supervised as three
processes), or `web`, `worker`, `clock` (PaaS split)."""

from __future__ import annotations

import logging
import signal
import sys
from typing import Any

import click

from connector.cli.state import CliState, pass_state
from connector.cli.supervise import supervise
from connector.config import Config
from connector.jobs import default_registry
from connector.jobs.registry import JobRegistry, Role
from connector.jobs.schedule import start_up
from connector.jobs.worker_loop import WorkerLoops
from connector.mappings import MappingError, load_mapping
from connector.runtime import Runtime
from connector.store.migrate import upgrade
from connector.web.app import create_app
from connector.web.server import GunicornApp

log = logging.getLogger(__name__)

#: ``serve`` runs the worker and the clock at a lower CPU priority than the web process, so
#: that on a busy single machine Stripe's webhooks are acknowledged first and the work they
#: bring waits a moment instead (bench/serve_intake.py, docs/benchmarks.md).
BACKGROUND_NICENESS = {"worker": 10, "clock": 10}


def _valid_config(state: CliState) -> Config:
    """The config, if its CRM mapping is valid too: a process that would log a traceback
    for every CRM read or write refuses to start instead, saying what to fix."""
    config = state.config()
    try:
        load_mapping(config.mapping_path, config.crm_kind)
    except MappingError as exc:
        raise click.ClickException(
            "the CRM mapping is invalid, so dealbridge will not start:\n  "
            + "\n  ".join(exc.problems)
            + "\n(run `dealbridge check` after fixing it)"
        ) from exc
    return config


def _gunicorn(state: CliState, *, workers: int, threads: int, port: int | None) -> None:
    config = _valid_config(state)
    bind_port = port or config.raw["web"]["port"]
    host = config.raw["web"]["host"]

    def factory() -> Any:
        return create_app(runtime=Runtime(config))

    options = {
        "bind": f"{host}:{bind_port}",
        "workers": workers,
        "threads": threads,
        "accesslog": None,
        "timeout": 60,
    }
    GunicornApp(factory, options).run()


@click.command()
@click.option("--port", type=int, default=None, help="Port (default: web.port or $PORT).")
@click.option("--threads", type=int, default=8, show_default=True, help="Web threads.")
@pass_state
def serve(state: CliState, port: int | None, threads: int) -> None:
    """Web, worker and clock for a single machine, as three supervised processes (a busy
    worker never delays a webhook's acknowledgement). Migrates first."""
    config = _valid_config(state)
    upgrade(config.database_url)
    bind_port = port or config.raw["web"]["port"]
    base = [sys.executable, "-m", "connector"]
    if state.config_path:
        base += ["--config", state.config_path]
    web_command = ["web", "--workers", "1", "--threads", str(threads), "--port", str(bind_port)]
    processes = {"web": base + web_command, "worker": [*base, "worker"], "clock": [*base, "clock"]}
    if not _jobs_enabled(config):
        click.echo("jobs.enabled is false: serving the web app only (no worker, no clock).")
        processes = {"web": processes["web"]}
    sys.exit(supervise(processes, niceness=BACKGROUND_NICENESS))


def _jobs_enabled(config: Config) -> bool:
    return bool(config.raw["jobs"]["enabled"])


@click.command()
@click.option("--workers", type=int, default=2, show_default=True)
@click.option("--threads", type=int, default=4, show_default=True)
@click.option("--port", type=int, default=None)
@pass_state
def web(state: CliState, workers: int, threads: int, port: int | None) -> None:
    """Only the web app (webhooks, pages, API); pair with `worker` and `clock`."""
    _gunicorn(state, workers=workers, threads=threads, port=port)


def _scheduler_only(state: CliState, roles: tuple[Role, ...]) -> None:
    config = _valid_config(state)
    if not _jobs_enabled(config):
        # Loud, not idle: a worker that quietly did nothing would leave webhooks unprocessed.
        raise click.ClickException(
            f"jobs.enabled is false in this configuration, so the {'/'.join(roles)} does not "
            "run; set it to true (or leave it out) where background jobs should run"
        )
    runtime = Runtime(config)
    if "clock" in roles:
        start_up(runtime)
    jobs = default_registry()
    log.info("running %s jobs: %s", "/".join(roles), [j.name for j in jobs.jobs(roles)])
    if roles == ("worker",):
        _worker_loops(runtime, jobs)
        return
    scheduler = jobs.build_scheduler(runtime, roles, blocking=True)
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        runtime.close()


def _worker_loops(runtime: Runtime, jobs: JobRegistry) -> None:
    """The worker's jobs run when there is work (``jobs/worker_loop.py``), woken by the
    store's doorbell, until the process is stopped."""
    loops = WorkerLoops.for_worker(jobs, runtime)
    previous = signal.signal(signal.SIGTERM, lambda _signum, _frame: loops.stop_soon())
    loops.start()
    try:
        loops.wait()
    except KeyboardInterrupt:
        pass
    finally:
        loops.stop()
        signal.signal(signal.SIGTERM, previous)
        runtime.close()


@click.command()
@pass_state
def worker(state: CliState) -> None:
    """Drain the inbox and outbox: processes webhooks and sends queued writes."""
    _scheduler_only(state, ("worker",))


@click.command()
@pass_state
def clock(state: CliState) -> None:
    """Periodic triggers: poll the CRM, reconcile with Stripe, check overdue invoices."""
    _scheduler_only(state, ("clock",))


COMMANDS = [serve, web, worker, clock]
