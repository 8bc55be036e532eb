"""`faktory-py`: the entry point. It loads the configuration (Faktory's flags, environment
variables and `conf.d/*.toml`, all read by config/), sets up logging and runs the server
until a signal, mapping the outcome to the exit status (0 stopped, 1 failed, 2 bad config).

`faktory-py conformance --url tcp://host:port ...` is a subcommand of its own: it runs the
protocol conformance cases against any running server (see faktory_py/tools/conformance/runner.py);
so is `faktory-py bench --url ...`, the load generator (faktory_py/tools/loadgen/), and
`faktory-py check-config -c DIR`, which validates a configuration directory without serving.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

import trio

from . import FAKTORY_VERSION, __version__
from .config import Config, ConfigError
from .config import load as load_config
from .server.app import Server, serve
from .server.fdlimit import raise_soft_limit

async def _run(config: Config, argv: list[str]) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully; SIGHUP reloads the
    configuration (`argv`'s flags, the environment and conf.d read again: protocol/spec.md §11.6).

    serve() is never cancelled from here once it serves: a signal asks it to stop, and it
    returns once it has (or raises, e.g. JournalFailed, when it stopped for any other reason:
    exit 1). Before it serves (loading, or a standby: protocol/spec.md §7.1) it is cancelled.
    """
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:

            server: Server | None = None

            async def run_server(task_status: trio.TaskStatus[Server]) -> None:
                await serve(config, task_status=task_status)
                nursery.cancel_scope.cancel()  # served out: stop listening for signals

            async def start() -> None:
                nonlocal server
                server = await nursery.start(run_server)

            nursery.start_soon(start)
            async for signum in signals:
                logging.getLogger("faktory_py").info("received %s", signal.Signals(signum).name)
                if server is None:  # still starting (a standby waits here): nothing to drain
                    if signum != signal.SIGHUP:
                        nursery.cancel_scope.cancel()
                elif signum == signal.SIGHUP:
                    server.reload(lambda: load_config(argv, os.environ))
                else:
                    server.shutdown()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["conformance"]:
        from .tools.conformance import runner  # the checker needs neither trio nor the server
        return runner.main(argv[1:])
    if argv[:1] == ["bench"]:
        from .tools.loadgen import cli as bench_cli  # the load generator needs neither trio nor the server
        return bench_cli.main(argv[1:])
    if argv[:1] == ["check-config"]:
        return check_config(argv[1:])
    if "-v" in argv:
        print(f"faktory_py {__version__} (Faktory protocol {FAKTORY_VERSION})")
        return 0
    try:
        config = load_config(argv, os.environ)
    except ConfigError as exc:
        print(f"faktory-py: {exc}", file=sys.stderr)
        return 2
    configure_logging(config)
    raise_soft_limit()
    try:
        trio.run(_run, config, argv)
    except Exception as exc:  # start-up failures (corrupt journal, port in use), a failed journal
        for leaf in _leaves(exc):
            logging.getLogger("faktory_py").error("%s", leaf)
        return 1
    return 0


def configure_logging(config: Config) -> None:
    """`-l`'s level (its names are logging's) and `--log-format`'s lines on stderr.

    JSON lines come from python-json-logger (a maintained formatter that handles exceptions,
    `extra` fields and values JSON cannot hold, which a few lines of our own would get wrong
    in the corners): `timestamp` (ISO 8601, UTC), `level`, `logger`, `message`, and the job's
    `jid`, `jobtype`, `queue` on lines about one job (`core.jobs.log_fields`).
    """
    handler = logging.StreamHandler()
    if config.log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(JsonFormatter("%(levelname)s %(name)s %(message)s", timestamp=True,
                                           rename_fields={"levelname": "level", "name": "logger"}))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname).1s %(name)s: %(message)s"))
    logging.basicConfig(level=config.log_level.upper(), handlers=[handler])


def check_config(argv: list[str]) -> int:
    """`faktory-py check-config -c DIR [-e ENV]`: load the configuration as the server would
    (the same flags and rules), print its warnings and errors; exit 0 when the server would
    start with it, 2 when it would not."""
    if {"-h", "--help"} & set(argv):
        print("usage: faktory-py check-config [-c DIR] [-e ENV] [the server's other flags]\n\n"
              "Load the configuration as `faktory-py` would with the same flags; print its\n"
              "warnings and errors; exit 0 when it is valid, 2 when it is not.")
        return 0
    try:
        config = load_config(argv, os.environ)
        if not config.conf_dir.is_dir():
            raise ConfigError(f"no configuration directory {config.conf_dir}")
    except ConfigError as exc:
        print(f"faktory-py check-config: {exc}", file=sys.stderr)
        return 2
    for warning in (*config.throttles.warnings, *config.cron.warnings, *config.statsd.warnings):
        print(f"faktory-py check-config: warning: {warning}", file=sys.stderr)
    counts = f"{len(config.throttles.entries)} throttles"
    if config.throttles.limits:
        counts += f", {len(config.throttles.limits)} limits"
    if config.cron.entries:
        counts += f", {len(config.cron.entries)} cron entries"
    print(f"faktory-py check-config: {config.conf_dir} is valid ({counts})")
    return 0


def _leaves(exc: BaseException) -> list[BaseException]:
    """The real errors inside trio's exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]
