"""Configuration: Faktory's flags, env vars, conf.d TOML and password rules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from faktory_py.config import (BatchesConfig, ConfigError, TlsFiles, WebConfig, load, load_toml,
                               resolve_password, split_binding)


def dirs(tmp_path: Path) -> list[str]:
    return ["-d", str(tmp_path / "data"), "-c", str(tmp_path / "conf")]


def test_defaults_follow_faktory(tmp_path: Path) -> None:
    config = load(dirs(tmp_path), {})
    assert config.binding == "localhost:7419"
    assert config.web_binding == "localhost:7420"
    assert config.environment == "development"
    assert config.password is None
    assert config.fsync == "everysec"
    assert config.max_connections == 2000
    assert config.max_line == 16 * 1024 * 1024


def test_flags_and_env(tmp_path: Path) -> None:
    config = load(["-b", ":7500", "-w", "0.0.0.0:7501", "-l", "debug", *dirs(tmp_path)],
                          {"FAKTORY_ENV": "production", "FAKTORY_PASSWORD": "pw"})
    assert (config.binding, config.web_binding, config.log_level) == (":7500", "0.0.0.0:7501", "debug")
    assert config.environment == "production"
    assert config.password == "pw"
    assert load(["-e", "staging", *dirs(tmp_path)], {"FAKTORY_PASSWORD": "x"}).environment == "staging"


def test_unknown_environment_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown environment"):
        load(["-e", "qa", *dirs(tmp_path)], {})


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_production_requires_a_password(tmp_path: Path, environment: str) -> None:
    absent = tmp_path / "no-such-password"
    with pytest.raises(ConfigError, match="requires a password"):
        resolve_password(environment, {}, {}, default_file=absent)
    assert resolve_password(environment, {}, {"FAKTORY_SKIP_PASSWORD": "yes"}, default_file=absent) is None
    assert resolve_password("development", {}, {}, default_file=absent) is None
    present = tmp_path / "password"
    present.write_text("from-etc\n")
    assert resolve_password(environment, {}, {}, default_file=present) == "from-etc"


def test_password_sources(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from-file\n")
    assert resolve_password("development", {}, {"FAKTORY_PASSWORD": str(secret)}) == "from-file"
    assert resolve_password("development", {"faktory": {"password": "toml"}}, {}) == "toml"
    assert resolve_password("development", {"faktory": {"password": "toml"}}, {"FAKTORY_PASSWORD": "env"}) == "env"
    with pytest.raises(ConfigError, match="cannot read password file"):
        resolve_password("development", {}, {"FAKTORY_PASSWORD": str(tmp_path / "missing")})


def test_conf_d_files_are_concatenated_in_order(tmp_path: Path) -> None:
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    (conf_d / "a.toml").write_text('[[cron]]\nschedule = "* * * * *"')  # no trailing newline
    (conf_d / "b.toml").write_text('[[cron]]\nschedule = "*/5 * * * *"\n[faktory_py]\nfsync = "always"\n')
    toml = load_toml(tmp_path)
    assert [c["schedule"] for c in toml["cron"]] == ["* * * * *", "*/5 * * * *"]
    (conf_d / "c.toml").write_text("[faktory_py\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_toml(tmp_path)


def test_toml_settings_reach_the_config(tmp_path: Path) -> None:
    conf_d = tmp_path / "conf" / "conf.d"
    conf_d.mkdir(parents=True)
    (conf_d / "server.toml").write_text(
        '[faktory]\nbinding = "127.0.0.1:7600"\npassword = "p"\n'
        '[faktory_py]\nfsync = "always"\nmax_connections = 10\n')
    config = load(dirs(tmp_path), {})
    assert (config.binding, config.password, config.fsync, config.max_connections) == (
        "127.0.0.1:7600", "p", "always", 10)
    assert load(["-b", "127.0.0.1:7700", "--fsync", "no", *dirs(tmp_path)], {}).fsync == "no"


@pytest.mark.parametrize("setting, message", [
    ("shutdown_grace = -1", "shutdown_grace must be"), ('shutdown_grace = "1"', "shutdown_grace must be"),
    ("max_handshakes = 0", "max_handshakes must be"), ("max_handshakes = 1.5", "max_handshakes must be"),
])
def test_stop_and_handshake_settings_are_validated(tmp_path: Path, setting: str, message: str) -> None:
    conf_d = tmp_path / "conf" / "conf.d"
    conf_d.mkdir(parents=True)
    (conf_d / "server.toml").write_text("[faktory_py]\nshutdown_grace = 2.5\nmax_handshakes = 7\n")
    config = load(dirs(tmp_path), {})
    assert (config.timers.shutdown_grace, config.max_handshakes) == (2.5, 7)
    (conf_d / "server.toml").write_text(f"[faktory_py]\n{setting}\n")
    with pytest.raises(ConfigError, match=message):
        load(dirs(tmp_path), {})


def test_sections_become_typed_settings(tmp_path: Path) -> None:
    """Every TOML setting is read once, by `load`: the rest of the server gets typed values."""
    default = load(dirs(tmp_path), {})
    assert (default.description, default.web, default.batches, default.tls) == (
        "Faktory Enterprise", WebConfig(), BatchesConfig(), None)
    conf_d = tmp_path / "conf" / "conf.d"
    conf_d.mkdir(parents=True)
    (conf_d / "all.toml").write_text(
        '[faktory]\ndescription = "Mine"\n[web]\npassword = "webpw"\nallowed_hosts = ["a.example"]\n'
        '[batches]\npolicy = "permissive"\nuncommitted_ttl = 5\n'
        "[faktory_py]\nmax_line = 1024\ncompact_min_bytes = 4096\n")
    key, cert = tmp_path / "conf" / "private.key.pem", tmp_path / "conf" / "public.cert.pem"
    key.write_text("key")
    cert.write_text("cert")
    config = load(dirs(tmp_path), {})
    assert config.description == "Mine"
    assert config.web == WebConfig(password="webpw", allowed_hosts=("a.example",))
    assert config.batches == BatchesConfig(policy="permissive", uncommitted_ttl=5.0)
    assert (config.max_line, config.compact_min_bytes) == (1024, 4096)
    assert config.tls == TlsFiles(key, cert)  # found at load, not when the server starts


@pytest.mark.parametrize("setting", ["max_line = 0", 'max_connections = "many"', "compact_min_bytes = 1.5"])
def test_limits_are_positive_integers(tmp_path: Path, setting: str) -> None:
    conf_d = tmp_path / "conf" / "conf.d"
    conf_d.mkdir(parents=True)
    (conf_d / "server.toml").write_text(f"[faktory_py]\n{setting}\n")
    with pytest.raises(ConfigError, match=r"^\[faktory_py\] \w+ must be a positive integer$"):
        load(dirs(tmp_path), {})


@pytest.mark.parametrize("binding, expected", [
    ("localhost:7419", ("localhost", 7419)), (":7419", ("", 7419)),
    ("[::1]:7419", ("::1", 7419)), ("0.0.0.0:80", ("0.0.0.0", 80)), ("myhost", ("myhost", 7419)),
])
def test_split_binding(binding: str, expected: tuple[str, int]) -> None:
    assert split_binding(binding, 7419) == expected


def test_cli_version_and_refusals(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "faktory_py"]
    version = subprocess.run([*run, "-v"], capture_output=True, text=True, timeout=30)
    assert version.returncode == 0 and "faktory_py" in version.stdout
    refused = subprocess.run([*run, "-e", "production", *dirs(tmp_path)], capture_output=True, text=True,
                             timeout=30, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    if not Path("/etc/faktory/password").exists():
        assert refused.returncode == 2
        assert "requires a password" in refused.stderr


# --- --store: the op log in Redis --------------------------------------------------------

def test_the_journal_in_the_data_directory_is_the_default(tmp_path: Path) -> None:
    assert load(dirs(tmp_path), {}).redis is None
    assert load([*dirs(tmp_path), "--store", "local"], {}).redis is None


def test_a_redis_store_url(tmp_path: Path) -> None:
    conf = tmp_path / "conf" / "conf.d"
    conf.mkdir(parents=True)
    (conf / "r.toml").write_text("[faktory_py.redis]\nlease_ttl_ms = 2000\nrenew_every_ms = 400\nmin_replicas = 1\n"
                                 'node_id = "node-a"\nadvertise = "10.0.0.5:7419"\n')
    redis = load([*dirs(tmp_path), "--store", "rediss://app:p%40ss@redis.example:6380/3?name=billing"], {}).redis
    assert redis is not None
    assert (redis.host, redis.port, redis.db, redis.username, redis.password, redis.tls, redis.name) == (
        "redis.example", 6380, 3, "app", "p@ss", True, "billing")
    assert (redis.lease_ttl_ms, redis.renew_every_ms, redis.min_replicas, redis.node_id) == (2000, 400, 1, "node-a")
    assert redis.advertise == "10.0.0.5:7419" and (redis.host, redis.port) == ("redis.example", 6380)
    assert "p@ss" not in repr(redis) and "ss@" not in redis.safe_url
    assert redis.safe_url == "rediss://redis.example:6380/3?name=billing"
    assert redis.url() == "rediss://app:p%40ss@redis.example:6380/3"


def test_store_defaults(tmp_path: Path) -> None:
    redis = load([*dirs(tmp_path), "--store", "redis://127.0.0.1"], {}).redis
    assert redis is not None
    assert (redis.port, redis.db, redis.name, redis.lease_ttl_ms, redis.renew_every_ms, redis.min_replicas) == (
        6379, 0, "default", 5000, 1000, 0)
    assert redis.advertise is None  # a standby parks clients of this node's term instead of forwarding


def test_a_sentinel_store_url(tmp_path: Path) -> None:
    """The form Harbor and others use: the Sentinels, then the master's name and the db;
    `user:password@` is the Redis master's, `sentinel_password` the Sentinels' own."""
    redis = load([*dirs(tmp_path), "--store", "redis+sentinel://app:p%40ss@s1:26380,s2,[::1]:5000/fkmaster/2"
                  "?name=billing&sentinel_password=s3nt"], {}).redis
    assert redis is not None
    assert redis.sentinels == (("s1", 26380), ("s2", 26379), ("::1", 5000))
    assert (redis.service, redis.db, redis.username, redis.password, redis.sentinel_password, redis.name) == (
        "fkmaster", 2, "app", "p@ss", "s3nt", "billing")
    assert redis.min_replicas == 1  # failing over is why one runs Sentinels: an +OK waits for a replica
    assert "s3nt" not in repr(redis) and "p@ss" not in repr(redis)
    assert redis.safe_url == "redis+sentinel://s1:26380,s2:26379,[::1]:5000/fkmaster/2?name=billing"
    plain = load([*dirs(tmp_path), "--store", "redis+sentinel://s1/fkmaster"], {}).redis
    assert plain is not None and (plain.sentinels, plain.db, plain.sentinel_password) == ((("s1", 26379),), 0, None)


@pytest.mark.parametrize("url, message", [
    ("redis+cluster://h1:7000/", "not supported"),
    ("redis+sentinel://h1:26379,h2:26379", "needs the master's name"),
    ("redis+sentinel://h1:26379/mymaster/zero", "must be a number"),
    ("redis+sentinel://h1:x/mymaster", "invalid port"),
    ("redis+sentinel://h1,/mymaster", "needs a host"),
    ("redis+sentinel://h1/mymaster?ssl=1", "unknown URL parameter"),
    ("redis://h1,h2", "one host"),
    ("memcached://h", "--store must be local"),
    ("redis://", "needs a host"),
    ("redis://h:notaport", "invalid port"),
    ("redis://h/zero", "must be a number"),
    ("redis://h?name=a b", "name must be"),
    ("redis://h?color=red", "unknown URL parameter"),
])
def test_bad_store_urls_are_refused(tmp_path: Path, url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load([*dirs(tmp_path), "--store", url], {})


@pytest.mark.parametrize("toml, message", [
    ("lease_ttl_ms = 50", "lease_ttl_ms must be an integer >= 100"),
    ("renew_every_ms = 3000", "at most half of lease_ttl_ms"),
    ("min_replicas = -1", "min_replicas must be"),
    ("colour = 1", 'unknown key "colour"'),
    ('node_id = "a:b"', "node_id must be"),
    ('advertise = "10.0.0.5"', 'advertise must be "host:port"'),
    ('advertise = ":7419"', 'advertise must be "host:port"'),
    ("advertise = 7419", 'advertise must be "host:port"'),
])
def test_bad_redis_settings_are_refused(tmp_path: Path, toml: str, message: str) -> None:
    conf = tmp_path / "conf" / "conf.d"
    conf.mkdir(parents=True)
    (conf / "r.toml").write_text(f"[faktory_py.redis]\n{toml}\n")
    with pytest.raises(ConfigError, match=message):
        load([*dirs(tmp_path), "--store", "redis://h"], {})


def test_fsync_does_not_apply_to_redis(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--fsync does not apply"):
        load([*dirs(tmp_path), "--store", "redis://h", "--fsync", "always"], {})


@pytest.mark.parametrize("table, key", [("faktory_py.results", "from_track_desc"), ("faktory_py.metrics", "timings")])
@pytest.mark.parametrize("value, read", [("0", 0), ("1", 1), ('"off"', "off"), ('"true"', "true")])
def test_a_flag_is_true_or_false_and_nothing_else(tmp_path: Path, table: str, key: str, value: str,
                                                  read: object) -> None:
    """A truthy value is refused rather than read as on: `timings = "off"` must not turn timing on."""
    conf_d = tmp_path / "conf" / "conf.d"
    conf_d.mkdir(parents=True)
    (conf_d / "flags.toml").write_text(f"[{table}]\n{key} = {value}\n")
    with pytest.raises(ConfigError) as refused:
        load(dirs(tmp_path), {})
    assert str(refused.value) == f"[{table}] {key} must be true or false, not {read!r}"


def test_io_processes_come_from_the_flag_else_the_environment(tmp_path: Path) -> None:
    assert load(dirs(tmp_path), {}).io_processes == 0
    assert load(dirs(tmp_path), {"FAKTORY_PY_IO_PROCESSES": "2"}).io_processes == 2
    assert load(["--io-processes", "0", *dirs(tmp_path)], {"FAKTORY_PY_IO_PROCESSES": "2"}).io_processes == 0


@pytest.mark.parametrize("flag, env", [(["--io-processes", "-1"], {}), (["--io-processes", "65"], {}),
                                       ([], {"FAKTORY_PY_IO_PROCESSES": "two"})])
def test_io_processes_out_of_range_are_refused(tmp_path: Path, flag: list[str], env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="--io-processes"):
        load([*flag, *dirs(tmp_path)], env)
