"""`faktory-py`: Faktory's command line (-b -w -e -l -d -c -v) and environment variables.

Flags and their defaults follow the `faktory` binary so existing deployment scripts keep
working; faktory_py's own settings (fsync policy, connection limit, line limit) live in
`conf.d/*.toml` under `[faktory_py]` or in long options.

`faktory-py conformance --url tcp://host:port ...` is a subcommand of its own: it runs the
protocol conformance cases against any running server (see faktory_py/tools/conformance/runner.py);
so is `faktory-py bench --url ...`, the load generator (faktory_py/tools/loadgen/).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

import trio

from . import FAKTORY_VERSION, __version__
from .config import (DEFAULT_BINDING, DEFAULT_WEB_BINDING, ENVIRONMENTS, FSYNC_POLICIES, Config,
                     ConfigError, Timers, load_toml, resolve_password)
from .server.app import Server, serve
from .server.fdlimit import raise_soft_limit

LOG_LEVELS = {"error": logging.ERROR, "warn": logging.WARNING, "info": logging.INFO, "debug": logging.DEBUG}

_SUBCOMMANDS = """subcommands (each with its own --help):
  faktory-py conformance --url tcp://host:port  run the protocol conformance cases against any server
  faktory-py bench --url tcp://host:port        benchmark any running server (needs the loadgen extra)
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="faktory-py", description="A Faktory-compatible job server.",
                                epilog=_SUBCOMMANDS, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-b", dest="binding", default=None, help=f"command port binding (default {DEFAULT_BINDING})")
    p.add_argument("-w", dest="web_binding", default=None, help=f"web UI binding (default {DEFAULT_WEB_BINDING})")
    p.add_argument("-e", dest="environment", default=None, help="development, staging or production")
    p.add_argument("-l", dest="log_level", default="info", choices=sorted(LOG_LEVELS), help="log level")
    p.add_argument("-d", dest="data_dir", default=None, help="storage directory")
    p.add_argument("-c", dest="conf_dir", default=None, help="configuration directory")
    p.add_argument("-v", dest="version", action="store_true", help="print version and exit")
    p.add_argument("--fsync", choices=FSYNC_POLICIES, default=None,
                   help=f"journal fsync policy (default {Config.fsync})")
    p.add_argument("--max-connections", type=int, default=None, help=f"connection limit (default {Config.max_connections})")
    return p


def build_config(argv: list[str], env: dict[str, str]) -> Config:
    """Flags beat `conf.d` which beats defaults; dev and prod default dirs like Faktory's."""
    args = _parser().parse_args(argv)
    environment = args.environment or env.get("FAKTORY_ENV") or "development"
    if environment not in ENVIRONMENTS:
        raise ConfigError(f"unknown environment {environment!r}: use one of {', '.join(ENVIRONMENTS)}")
    dev = environment == "development"
    conf_dir = Path(args.conf_dir or ("~/.faktory" if dev else "/etc/faktory")).expanduser()
    data_dir = Path(args.data_dir or ("~/.faktory/db" if dev else "/var/lib/faktory/db")).expanduser()
    toml = load_toml(conf_dir)
    ours = toml.get("faktory_py", {})
    fsync = args.fsync or ours.get("fsync", Config.fsync)
    if fsync not in FSYNC_POLICIES:
        raise ConfigError(f"[faktory_py] fsync must be one of {', '.join(FSYNC_POLICIES)}")
    grace = ours.get("shutdown_grace", Timers.shutdown_grace)
    if type(grace) not in (int, float) or not 0 <= grace <= 3600:
        raise ConfigError("[faktory_py] shutdown_grace must be a number of seconds in [0, 3600]")
    handshakes = ours.get("max_handshakes", Config.max_handshakes)
    if type(handshakes) is not int or handshakes < 1:
        raise ConfigError("[faktory_py] max_handshakes must be a positive integer")
    return Config(
        binding=args.binding or toml.get("faktory", {}).get("binding", DEFAULT_BINDING),
        web_binding=args.web_binding or toml.get("web", {}).get("binding", DEFAULT_WEB_BINDING),
        environment=environment,
        log_level=args.log_level,
        data_dir=data_dir,
        conf_dir=conf_dir,
        password=resolve_password(environment, toml, env),
        fsync=fsync,
        max_connections=args.max_connections or ours.get("max_connections", Config.max_connections),
        max_handshakes=handshakes,
        timers=Timers(shutdown_grace=float(grace)),
        max_line=ours.get("max_line", Config.max_line),
        compact_min_bytes=ours.get("compact_min_bytes", Config.compact_min_bytes),
        toml=toml,
    )


async def _run(config: Config) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully.

    serve() is never cancelled from here: a signal asks it to stop, and it returns once it
    has (or raises, e.g. JournalFailed, when it stopped for any other reason: exit 1).
    """
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def run_server(task_status: trio.TaskStatus[Server]) -> None:
                await serve(config, task_status=task_status)
                nursery.cancel_scope.cancel()  # served out: stop listening for signals

            server = await nursery.start(run_server)
            async for signum in signals:
                logging.getLogger("faktory_py").info("received %s", signal.Signals(signum).name)
                server.shutdown()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["conformance"]:
        from .tools.conformance import runner  # the checker needs neither trio nor the server
        return runner.main(argv[1:])
    if argv[:1] == ["bench"]:
        try:
            from .tools.loadgen import cli as bench_cli  # the load generator needs neither trio nor the server
        except ModuleNotFoundError as exc:
            if exc.name != "hiredis":
                raise
            print("faktory-py bench: the load generator needs hiredis: pip install 'faktory_py[loadgen]'",
                  file=sys.stderr)
            return 2
        return bench_cli.main(argv[1:])
    if "-v" in argv:
        print(f"faktory_py {__version__} (Faktory protocol {FAKTORY_VERSION})")
        return 0
    try:
        config = build_config(argv, dict(os.environ))
    except ConfigError as exc:
        print(f"faktory-py: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=LOG_LEVELS[config.log_level],
                        format="%(asctime)s %(levelname).1s %(name)s: %(message)s")
    raise_soft_limit()
    try:
        trio.run(_run, config)
    except Exception as exc:  # start-up failures (corrupt journal, port in use), a failed journal
        for leaf in _leaves(exc):
            logging.getLogger("faktory_py").error("%s", leaf)
        return 1
    return 0


def _leaves(exc: BaseException) -> list[BaseException]:
    """The real errors inside trio's exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]
