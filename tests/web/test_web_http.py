"""The web UI over HTTP, in-process: auth, the cross-origin guard, `X-Script-Name`, TLS, and the
actions' edges, against `serve()` with its web UI on a free port (requests from a thread with
`http.client`, which sends exactly the headers a test names)."""

from __future__ import annotations

import base64
import html
import http.client
import json
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urljoin, urlsplit

import pytest
import trio
import trustme

from faktory_py import config as configuration
from faktory_py.config import Config, ConfigError, NamedLimit, Throttle, ThrottlesConfig, WebConfig, tls_files
from faktory_py.server.app import Server
from helpers.scan_guard import CountingDict, guard, private_set
from faktory_py.util.timefmt import format_time
from faktory_py.web import views
from faktory_py.web.hosts import LOOPBACK_NAMES, allowed_hosts

NOW_JOB = {"jobtype": "T", "args": [], "queue": "default"}


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


async def request(server: Server, method: str, path: str, body: str = "", headers: dict[str, str] | None = None,
                  context: ssl.SSLContext | None = None) -> Reply:
    url = server.web_urls[0]
    host, port = url.split("://")[1].rsplit(":", 1)

    def send() -> Reply:
        conn = (http.client.HTTPSConnection(host, int(port), context=context, timeout=10) if context
                else http.client.HTTPConnection(host, int(port), timeout=10))
        try:
            all_headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
            all_headers.update(headers or {})
            conn.request(method, path, body=body or None, headers=all_headers)
            response = conn.getresponse()
            return Reply(response.status, {k.lower(): v for k, v in response.getheaders()},
                         response.read().decode())
        finally:
            conn.close()

    return await trio.to_thread.run_sync(send)


def config(tmp_path: Path, password: str | None = None, web: str = "127.0.0.1:0",
           settings: WebConfig = WebConfig()) -> Config:
    (tmp_path / "conf").mkdir(parents=True, exist_ok=True)
    return Config(binding="127.0.0.1:0", web_binding=web, data_dir=tmp_path / "data",
                  conf_dir=tmp_path / "conf", password=password, web=settings)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def push(server: Server, jid: str, **fields: Any) -> None:
    server.dispatcher.manager.push({**NOW_JOB, "jid": jid, **fields}, server.dispatcher.clock.now())


# --- binding ----------------------------------------------------------------------------

async def test_web_ui_is_off_unless_bound(tmp_path: Path, running) -> None:
    server = await running(config(tmp_path, web="0"))
    assert server.web_urls == []
    assert not configuration.load(["-w", ":0", "-c", str(tmp_path / "conf")], {}).web_enabled
    assert configuration.load(["-c", str(tmp_path / "conf")], {}).web_binding == "localhost:7420"
    assert Config().web_enabled is False  # embedded servers never grab a fixed port by surprise


# --- auth -------------------------------------------------------------------------------

async def test_basic_auth_when_a_password_is_set(tmp_path: Path, running) -> None:
    server = await running(config(tmp_path, password="serverpw"))
    missing = await request(server, "GET", "/")
    assert (missing.status, missing.body) == (401, "Authorization required")
    assert missing.headers["www-authenticate"] == 'Basic realm="Faktory"'
    wrong = await request(server, "GET", "/", headers={"Authorization": "Basic " + _b64("u:nope")})
    assert (wrong.status, wrong.body) == (401, "Authorization failed")
    for user in ("", "anyone"):
        ok = await request(server, "GET", "/queues", headers={"Authorization": "Basic " + _b64(f"{user}:serverpw")})
        assert ok.status == 200
    assert (await request(server, "GET", "/static/app.css")).status == 401  # only /health is open
    health = await request(server, "GET", "/health")
    assert health.status == 200 and health.json()["server"]["faktory_version"] == "1.9.4"
    assert set(health.json()) == {"now", "server"}
    # a server with its journal in the data directory is always the primary (protocol/spec.md §7.1)
    primary = await request(server, "GET", "/health/primary")
    assert (primary.status, primary.body) == (200, "primary")


async def test_web_password_overrides_the_server_password(tmp_path: Path, running) -> None:
    server = await running(config(tmp_path, password="serverpw", settings=WebConfig(password="webpw")))
    assert (await request(server, "GET", "/", headers={"Authorization": "Basic " + _b64(":serverpw")})).status == 401
    assert (await request(server, "GET", "/", headers={"Authorization": "Basic " + _b64(":webpw")})).status == 200


# --- cross-origin guard -----------------------------------------------------------------

@pytest.mark.parametrize(("headers", "status"), [
    ({"Sec-Fetch-Site": "cross-site"}, 403),
    ({"Sec-Fetch-Site": "same-site"}, 403),
    ({"Sec-Fetch-Site": "same-origin"}, 302),
    ({"Sec-Fetch-Site": "none"}, 302),
    ({"Origin": "http://evil.test"}, 403),
    ({"Origin": "http://HOST"}, 302),
    ({}, 302),  # not a browser (curl, scripts)
])
async def test_cross_origin_posts_are_refused(tmp_path: Path, running, headers: dict[str, str], status: int) -> None:
    server = await running(config(tmp_path))
    push(server, "j" * 12)
    host = server.web_urls[0].split("://")[1]
    headers = {k: v.replace("HOST", host) for k, v in headers.items()}
    reply = await request(server, "POST", "/queues?name=default", "action=pause", headers)
    assert reply.status == status
    assert server.dispatcher.manager.store.is_paused("default") == (status == 302)
    # GETs always pass
    assert (await request(server, "GET", "/queues", headers=headers)).status == 200


# --- X-Script-Name ----------------------------------------------------------------------

async def test_script_name_prefixes_links_forms_and_redirects(tmp_path: Path, running) -> None:
    server = await running(config(tmp_path))
    push(server, "j" * 12)
    prefix = {"X-Script-Name": "/faktory"}
    for path in ("/faktory/queues", "/queues"):  # the proxy may or may not strip it
        page = await request(server, "GET", path, headers=prefix)
        assert page.status == 200
        assert 'href="/faktory/queues?name=default"' in page.body
        assert 'action="/faktory/queues?name=default"' in page.body
        assert 'href="/faktory/static/app.css"' in page.body
        assert 'href="/queues' not in page.body
    for i in range(30):
        push(server, f"paged-{i:06d}", queue="a.b")
    paged = await request(server, "GET", "/queues?name=a.b", headers=prefix)
    assert 'href="/faktory/queues?page=2&amp;name=a.b">next' in paged.body  # the pager keeps prefix and name
    moved = await request(server, "POST", "/faktory/queues?name=default", "action=pause", prefix)
    assert (moved.status, moved.headers["location"]) == (302, "/faktory/queues")
    plain = await request(server, "GET", "/queues", headers={"X-Script-Name": '/x"><script>'})
    assert 'href="/queues?name=default"' in plain.body  # an unusable prefix is ignored, never echoed


# --- TLS --------------------------------------------------------------------------------

async def test_tls_when_the_config_dir_has_a_certificate(tmp_path: Path, running) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cfg = config(tmp_path)
    cert.private_key_pem.write_to_path(str(cfg.conf_dir / "private.key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(cfg.conf_dir / "public.cert.pem"))
    server = await running(replace(cfg, tls=tls_files(cfg.conf_dir)))
    assert server.web_urls[0].startswith("https://")
    context = ssl.create_default_context()
    ca.configure_trust(context)
    assert (await request(server, "GET", "/health", context=context)).status == 200


# --- pages and actions ------------------------------------------------------------------

async def test_stats_is_info_and_static_assets_are_cached(tmp_path: Path, running) -> None:
    server = await running(config(tmp_path))
    stats = await request(server, "GET", "/stats")
    assert stats.headers["cache-control"] == "no-cache"
    assert set(stats.json()) == {"now", "server_utc_time", "faktory", "server"}
    asset = await request(server, "GET", "/static/uPlot.iife.min.js")
    assert asset.status == 200 and asset.headers["cache-control"] == "public, max-age=3600"


async def test_set_actions_by_key_and_their_refusals(tmp_path: Path, running) -> None:
    server = await running(config(tmp_path))
    manager = server.dispatcher.manager
    at = server.dispatcher.clock.now() + 3600
    manager.store.commit([{"op": "zadd", "set": "retries", "score": at, "job": {**NOW_JOB, "jid": "r" * 12}}])
    key = f"{format_time(at)}|{'r' * 12}"
    detail = await request(server, "GET", "/retries?key=" + quote(key))
    assert detail.status == 200 and "r" * 12 in detail.body
    assert (await request(server, "POST", "/retries", "action=explode&key=" + key)).status == 400
    assert (await request(server, "POST", "/morgue", "action=kill&key=all")).status == 400  # no kill in the morgue
    stale = await request(server, "POST", "/retries", f"action=kill&key={format_time(at + 1)}|{'r' * 12}")
    assert stale.status == 302 and manager.store.set_size("dead") == 0  # a stale key names nothing
    killed = await request(server, "POST", "/retries?key=" + quote(key), "action=delete")
    assert (killed.status, killed.headers["location"]) == (302, "/retries")
    assert manager.store.set_size("retries") == 0
    assert (await request(server, "GET", "/retries?key=" + quote(key))).status == 404
    assert (await request(server, "GET", "/queues?name=nope")).status == 404


async def test_queue_delete_selected_and_busy_signals(tmp_path: Path, running) -> None:
    server = await running(config(tmp_path))
    for jid in ("a" * 12, "b" * 12, "c" * 12):
        push(server, jid)
    reply = await request(server, "POST", "/queues?name=default", f"jid={'a' * 12}&jid={'c' * 12}")
    assert (reply.status, reply.headers["location"]) == (302, "/queues?name=default")
    assert [j["jid"] for j in server.dispatcher.manager.store.queued("default")] == ["b" * 12]
    assert (await request(server, "POST", "/busy", "wid=all&signal=explode")).status == 400
    assert (await request(server, "POST", "/busy", "wid=all&signal=quiet")).status == 302


async def test_busy_reservation_buttons_are_mutate_on_working_behind_the_cross_origin_guard(
        tmp_path: Path, running) -> None:
    """The Busy page marks a reservation holding a throttle slot and offers requeue / kill /
    discard (MUTATE on `working`); a cross-origin POST of one is 403 and changes nothing,
    a same-origin one ends the reservation and frees the slot (A-T16)."""
    throttles = ThrottlesConfig((Throttle("q", timeout=600, concurrency=2),))
    server = await running(replace(config(tmp_path), throttles=throttles))
    manager, now = server.dispatcher.manager, server.dispatcher.clock.now()
    for jid in ("k" * 12, "r" * 12, "d" * 12):
        push(server, jid, queue="q")
    for _ in range(2):
        manager.fetch(["q"], "w1", now)
    busy = await request(server, "GET", "/busy")
    assert busy.status == 200
    assert busy.body.count("throttle slot</span>") == 2
    assert busy.body.count('name="action" value="kill"') == 2
    host = server.web_urls[0].split("://")[1]
    kill = f"action=kill&jid={'k' * 12}"
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "http://evil.test"}):
        assert (await request(server, "POST", "/busy", kill, headers)).status == 403
    assert manager.store.reservation("k" * 12) is not None
    assert (await request(server, "POST", "/busy", f"action=explode&jid={'k' * 12}")).status == 400
    assert (await request(server, "POST", "/busy", "action=kill")).status == 400
    killed = await request(server, "POST", "/busy", kill, {"Sec-Fetch-Site": "same-origin"})
    assert (killed.status, killed.headers["location"]) == (302, "/busy")
    ((_score, _jid, dead),) = list(manager.store.set_entries("dead"))
    assert (dead["jid"], dead["failure"]["errtype"]) == ("k" * 12, "Killed")
    requeued = await request(server, "POST", "/busy", f"action=requeue&jid={'r' * 12}", {"Origin": f"http://{host}"})
    assert requeued.status == 302
    assert [job["jid"] for job in manager.store.queued("q")] == ["d" * 12, "r" * 12]
    job, _ = manager.fetch(["q"], "w1", now)
    assert job is not None and job["jid"] == "d" * 12  # the freed slots let it out
    assert (await request(server, "POST", "/busy", f"action=discard&jid={'d' * 12}")).status == 302
    assert manager.store.statistics().working == 0
    assert "throttle slot</span>" not in (await request(server, "GET", "/busy")).body


async def test_pages_of_100k_retries_touch_one_page(tmp_path: Path, running) -> None:
    """No request walks the whole set: rendering a page looks up its 25 entries, nothing more."""
    server = await running(config(tmp_path))
    retries = private_set(server.dispatcher.manager.store, "retries")
    at = server.dispatcher.clock.now() + 86400
    for i in range(100_000):
        retries.add(f"jid{i:07d}", at + i, {**NOW_JOB, "jid": f"jid{i:07d}"})  # test setup, not journaled
    guard(retries)
    for path, rows in (("/retries", 25), ("/retries?page=2345", 25), ("/retries?page=4001", 0),
                       ("/", 0), ("/stats", 0), ("/queues", 0)):
        CountingDict.lookups = 0
        reply = await request(server, "GET", path)
        assert reply.status == 200, path
        assert reply.body.count('name="key" value="') - (1 if rows else 0) == rows, path
        assert CountingDict.lookups == rows, path
    page = await request(server, "GET", "/retries?page=2345")
    assert "jid0058600" in page.body and "page 2345 of 4000" in page.body


# --- every name the server accepts has a page -------------------------------------------

#: jids no path segment can carry (and a form value barely): each is a valid jid (≥ 8 chars)
ODD_JIDS = ["a/b/c-jid", "../../etc", "ques?tion=1", "hash#tag#", "per%2Fcent%", "with spaces+plus",
            "amp&key=all", "line\nbreak", "cr\r\nlf\rjid", "nul\0byte", "ünïcødé/ジョブ", "|pipe|jid|"]


def links(body: str, pattern: str) -> list[str]:
    """The URLs of the `href`/`action` attributes matching `pattern`, as a browser reads them."""
    return [html.unescape(m) for m in re.findall(pattern, body)]


def browse(server: Server, href: str) -> str:
    """The path and query a browser requests for an href (it resolves `.`/`..` in the path)."""
    resolved = urlsplit(urljoin(server.web_urls[0] + "/queues", href))
    return resolved.path + ("?" + resolved.query if resolved.query else "")


async def test_every_jid_has_a_detail_page_and_its_actions(tmp_path: Path, running) -> None:
    server = await running(config(tmp_path))
    store = server.dispatcher.manager.store
    at = server.dispatcher.clock.now() + 3600
    for kind, set_name in (("retries", "retries"), ("scheduled", "scheduled"), ("morgue", "dead")):
        store.commit([{"op": "zadd", "set": set_name, "score": at + i, "job": {**NOW_JOB, "jid": jid}}
                      for i, jid in enumerate(ODD_JIDS)])
        listing = (await request(server, "GET", f"/{kind}")).body
        details = links(listing, rf'<td><a href="(/{kind}\?key=[^"]*)">')
        assert len(details) == len(ODD_JIDS)
        for jid, href in zip(ODD_JIDS, details):
            page = await request(server, "GET", browse(server, href))
            assert page.status == 200, (kind, jid)
            assert f"<code>{html.escape(jid)}</code>" in page.body
            [action] = links(page.body, r'<form method="post" action="([^"]*)" class="actions">')
            assert action == href  # the detail page's buttons act on the entry by the same URL
        # one by its detail page's form, the rest by the listing's checkboxes (as a browser posts them)
        first, *rest = details
        assert (await request(server, "POST", browse(server, first), "action=delete")).status == 302
        boxes = links(listing, r'<input type="checkbox" name="key" value="([^"]*)"')
        assert not any(c in box for box in boxes for c in "\r\n\0")  # nothing a browser would rewrite
        body = urlencode([("action", "delete")] + [("key", box) for box in boxes[1:]])
        assert (await request(server, "POST", f"/{kind}", body)).status == 302
        assert store.set_size(set_name) == 0, kind


async def test_queues_named_dot_and_dot_dot_have_pages_and_actions(tmp_path: Path, running) -> None:
    server = await running(config(tmp_path))
    store = server.dispatcher.manager.store
    for queue in (".", "..", "...", "a.b"):
        push(server, "j-" + queue.replace(".", "d") + "-" * 8, queue=queue)
    push(server, "odd\njid-in-queue", queue="..")
    listing = (await request(server, "GET", "/queues")).body
    for queue in (".", "..", "...", "a.b"):
        [href] = links(listing, rf'<tr data-queue="{re.escape(queue)}">\s*<td><a href="([^"]*)"')
        page = await request(server, "GET", browse(server, href))
        assert page.status == 200 and f"Queue <code>{queue}</code>" in page.body, queue
    page = (await request(server, "GET", browse(server, "/queues?name=..")) ).body
    forms = links(page, r'<form method="post" action="([^"]*)"')
    assert forms == ["/queues?name=..", "/queues?name=.."]
    boxes = links(page, r'name="jid" value="([^"]*)"')
    deleted = await request(server, "POST", browse(server, forms[1]), urlencode([("jid", boxes[1])]))
    assert (deleted.status, deleted.headers["location"]) == (302, "/queues?name=..")
    assert [job["jid"] for job in store.queued("..")] == ["j-dd--------"]
    paused = await request(server, "POST", browse(server, forms[0]), "action=pause")
    assert paused.status == 302 and store.statistics().paused == {".."}


async def test_faktory_paths_redirect_to_the_query_form(tmp_path: Path, running) -> None:
    server = await running(config(tmp_path))
    for path, location in (("/queues/default", "/queues?name=default"), ("/queues/", "/queues"),
                           ("/morgue/2026-01-01T00:00:00Z%7Cjid%2Fwith-slash", "/morgue?key=2026-01-01T00%3A00%3A00Z%7Cjid%2Fwith-slash")):
        moved = await request(server, "GET", path)
        assert (moved.status, moved.headers["location"]) == (301, location), path
    prefixed = await request(server, "GET", "/faktory/queues/default", headers={"X-Script-Name": "/faktory"})
    assert prefixed.headers["location"] == "/faktory/queues?name=default"


# --- the Throttles tab ------------------------------------------------------------------

def cells(body: str, queue: str) -> dict[str, str]:
    """A throttle row of /throttles: its cells' text by class."""
    row = re.search(rf'<tr data-queue="{re.escape(queue)}"[^>]*>(.*?)</tr>', body, re.S)
    assert row is not None, queue
    return {name: " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text)).split())
            for name, text in re.findall(r'<td class="([\w-]+)">(.*?)</td>', row.group(1), re.S)}


async def test_throttles_tab_only_when_throttles_are_configured(tmp_path: Path, running) -> None:
    plain = await running(config(tmp_path / "plain"))
    assert 'href="/throttles"' not in (await request(plain, "GET", "/")).body
    assert (await request(plain, "GET", "/throttles")).status == 404

    throttles = ThrottlesConfig((Throttle("q", timeout=60, concurrency=2), Throttle("w", timeout=30, worker=1)),
                                ('config: throttles.w: unknown key "<colour>" ignored',))
    server = await running(replace(config(tmp_path / "throttled", password="pw"), throttles=throttles))
    assert (await request(server, "GET", "/throttles")).status == 401  # auth like every page
    manager, now = server.dispatcher.manager, server.dispatcher.clock.now()
    for i in range(5):
        manager.push({**NOW_JOB, "jid": f"throttled-{i}", "queue": "q"}, now)
    for wid in ("wid-a", "wid-b", "wid-a"):
        manager.fetch(["q"], wid, now)  # the third finds q full
    auth = {"Authorization": "Basic " + _b64(":pw")}
    page = await request(server, "GET", "/throttles", headers=auth)
    assert page.status == 200
    assert '<a href="/throttles" class="active" aria-current="page">Throttles</a>' in page.body
    assert 'href="/throttles"' in (await request(server, "GET", "/", headers=auth)).body  # in every page's menu
    assert cells(page.body, "q") == {
        "partitions": "1", "concurrency": "2", "worker": "—", "in-use": "2 / 2 full", "waiting": "3", "rate": "—",
        "held-by": "wid-a 1 wid-b 1", "slot-release": "timeout", "timeout": "60 s", "overdue": "0", "warnings": ""}
    assert cells(page.body, "w") == {
        "partitions": "1", "concurrency": "—", "worker": "1", "in-use": "0", "waiting": "0", "rate": "—", "held-by": "—",
        "slot-release": "timeout", "timeout": "30 s", "overdue": "0",
        "warnings": 'config: throttles.w: unknown key "<colour>" ignored'}
    assert "&lt;colour&gt;" in page.body  # escaped
    # no inline script or style: the CSP allows neither
    assert re.findall(r"<script(?![^>]*\bsrc=)|<style|\sstyle=", page.body) == []
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert 'id="reload-error"' not in page.body  # no reload was rejected


async def test_throttles_tab_rate_column(tmp_path: Path, running) -> None:
    """A rate-limited throttle shows its grants in the window and, once the window is full,
    when it opens (THROTTLE STATUS's `grants_in_window` and `next_grant_at`)."""
    throttles = ThrottlesConfig((Throttle("r", timeout=60, rate=(2, 30)), Throttle("c", timeout=60, concurrency=1, rate=(5, 1.5))))
    server = await running(replace(config(tmp_path), throttles=throttles))
    manager, now = server.dispatcher.manager, server.dispatcher.clock.now()
    for i in range(3):
        manager.push({**NOW_JOB, "jid": f"rate-limited-{i}", "queue": "r"}, now)
    assert cells((await request(server, "GET", "/throttles")).body, "r")["rate"] == (
        "0 / 2 in the last 30 s next opening: —")
    manager.fetch(["r"], "wid-a", now)
    manager.fetch(["r"], "wid-a", now)
    page = await request(server, "GET", "/throttles")
    assert cells(page.body, "r")["rate"] == f"2 / 2 in the last 30 s next opening: {format_time(now + 30)}"
    assert cells(page.body, "r")["waiting"] == "1"
    assert cells(page.body, "c")["rate"] == "0 / 5 in the last 1.5 s next opening: —"


async def test_throttles_tab_partitions_and_named_limits(tmp_path: Path, running) -> None:
    """A partitioned throttle lists its busiest partitions (most waiting first) and its rate
    per partition; a named limit's row shows its selectors, and `—` for its absent timeout."""
    throttles = ThrottlesConfig(
        (Throttle("t", timeout=60, concurrency=1, rate=(9, 60), partition=("custom.tenant",)),),
        limits=(NamedLimit("pdf", jobtypes=("RenderPDF",), queues=("a", "b"), concurrency=2),))
    server = await running(replace(config(tmp_path), throttles=throttles))
    manager, now = server.dispatcher.manager, server.dispatcher.clock.now()
    for i, tenant in enumerate(["x", "x", "x", "y", "y"]):
        manager.push({**NOW_JOB, "jid": f"partitioned-{i}", "queue": "t", "custom": {"tenant": tenant}}, now)
    manager.push({**NOW_JOB, "jid": "render-pdf-1", "queue": "a", "jobtype": "RenderPDF"}, now)
    for _ in range(3):
        manager.fetch(["t", "a"], "wid-a", now)
    page = (await request(server, "GET", "/throttles")).body
    assert cells(page, "t") == {
        "partitions": '2 ["x"] 1 in use, 2 waiting ["y"] 1 in use, 1 waiting', "concurrency": "1", "worker": "—",
        "in-use": "2 (1 per partition)", "waiting": "3", "rate": "9 per partition in any 60 s", "held-by": "wid-a 2",
        "slot-release": "timeout", "timeout": "60 s", "overdue": "0", "warnings": ""}
    assert cells(page, "pdf") == {
        "partitions": "1", "concurrency": "2", "worker": "—", "in-use": "1 / 2", "waiting": "0", "rate": "—",
        "held-by": "wid-a 1", "slot-release": "timeout", "timeout": "—", "overdue": "0", "warnings": ""}
    assert "jobtypes RenderPDF; queues a, b" in page


async def test_throttles_tab_follows_reloads(tmp_path: Path, running) -> None:
    """A server started without throttles gets the tab when a reload (SIGHUP, in process
    here) configures some, and loses it when one removes them; a rejected reload's error is
    a banner on the tab, shown even before any throttle is configured."""
    server = await running(config(tmp_path))

    def rejected() -> Config:
        raise ConfigError("config: throttles.q: timeout is <required>")

    def with_throttles(*entries: Throttle) -> Callable[[], Config]:
        return lambda: replace(server.config_reload.config, throttles=ThrottlesConfig(entries))

    async def menu_lists_tab() -> bool:
        return 'href="/throttles"' in (await request(server, "GET", "/")).body

    assert (await request(server, "GET", "/throttles")).status == 404 and not await menu_lists_tab()
    assert not server.reload(rejected)
    page = await request(server, "GET", "/throttles")
    assert page.status == 200 and await menu_lists_tab()
    assert re.search(r'<p class="banner warning" id="reload-error" role="alert">[^<]*<code>'
                     r'config: throttles.q: timeout is &lt;required&gt;</code></p>', page.body)
    assert "Throttles <small>(0)</small>" in page.body
    assert server.reload(with_throttles(Throttle("q", timeout=60, concurrency=1)))
    page = await request(server, "GET", "/throttles")
    assert page.status == 200 and await menu_lists_tab() and 'id="reload-error"' not in page.body
    assert cells(page.body, "q")["in-use"] == "0 / 1"
    assert not server.reload(rejected)  # the throttles in force stay, under the banner
    page = await request(server, "GET", "/throttles")
    assert 'id="reload-error"' in page.body and cells(page.body, "q")["concurrency"] == "1"
    assert server.reload(with_throttles())
    assert (await request(server, "GET", "/throttles")).status == 404 and not await menu_lists_tab()


# --- security headers -------------------------------------------------------------------

async def test_security_headers_on_every_response(tmp_path: Path, running, monkeypatch) -> None:
    open_ui = await running(config(tmp_path / "open"))
    locked = await running(config(tmp_path / "locked", password="pw"))
    monkeypatch.setattr(views, "debug_facts", lambda *args: 1 / 0)
    checks = [
        (open_ui, "GET", "/", {}, 200), (open_ui, "GET", "/static/app.js", {}, 200),
        (open_ui, "GET", "/nope", {}, 404), (open_ui, "GET", "/queues?name=nope", {}, 404),
        (open_ui, "POST", "/busy", {"Sec-Fetch-Site": "cross-site"}, 403),
        (open_ui, "GET", "/", {"Host": "evil.test"}, 403), (open_ui, "GET", "/debug", {}, 500),
        (locked, "GET", "/", {}, 401), (locked, "GET", "/health", {}, 200),
    ]
    for server, method, path, headers, status in checks:
        reply = await request(server, method, path, "signal=quiet" if method == "POST" else "", headers)
        assert reply.status == status, path
        assert reply.headers["x-frame-options"] == "DENY", path
        assert reply.headers["x-content-type-options"] == "nosniff", path
        assert reply.headers["referrer-policy"] == "same-origin", path
        csp = dict(part.strip().split(" ", 1) for part in reply.headers["content-security-policy"].split(";"))
        assert (csp["frame-ancestors"], csp["default-src"], csp["script-src"]) == ("'none'", "'none'", "'self'")


# --- Host allow-list --------------------------------------------------------------------

@pytest.mark.parametrize(("password", "names", "hosts"), [
    # loopback binding, no password: only the loopback names, any port, any case
    (None, None, {"localhost:7420": 200, "LocalHost": 200, "127.0.0.1:1": 200, "[::1]:7420": 200,
                  "evil.test": 403, "localhost.evil.test": 403, "": 403}),
    # a password keeps a rebinding page out already: every name, then auth
    ("pw", None, {"evil.test": 401, "localhost": 401}),
    (None, ("Faktory.Example.com", "10.0.0.7", "::1"),
     {"faktory.example.com:443": 200, "10.0.0.7:7420": 200, "[::1]:7420": 200, "localhost": 403}),
    (None, ("*",), {"evil.test": 200}),
])
async def test_host_allow_list(tmp_path: Path, running, password: str | None, names: tuple[str, ...] | None,
                               hosts: dict[str, int]) -> None:
    server = await running(config(tmp_path, password=password, settings=WebConfig(allowed_hosts=names)))
    for host, status in hosts.items():
        reply = await request(server, "GET", "/queues", headers={"Host": host})
        assert reply.status == status, host
        if status == 403:
            assert "allowed_hosts" in reply.body
        assert (await request(server, "GET", "/health", headers={"Host": host})).status == 200  # probes pass


def test_host_allow_list_defaults_and_refusals(tmp_path: Path) -> None:
    assert allowed_hosts(Config(web_binding="localhost:7420")) == LOOPBACK_NAMES
    assert allowed_hosts(Config(web_binding="[::1]:7420")) == LOOPBACK_NAMES
    assert allowed_hosts(Config(web_binding=":7420")) is None  # all interfaces: its names are unknown
    assert allowed_hosts(Config(web_binding="0.0.0.0:7420")) is None
    assert allowed_hosts(Config(web_binding="localhost:7420", password="pw")) is None
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    (conf_d / "web.toml").write_text('[web]\nallowed_hosts = ["Faktory.Example.com"]\n')
    assert allowed_hosts(configuration.load(["-c", str(tmp_path)], {})) == {"faktory.example.com"}
    for bad in ('"faktory.example.com"', '[""]', "[7420]"):
        (conf_d / "web.toml").write_text(f"[web]\nallowed_hosts = {bad}\n")
        with pytest.raises(ConfigError, match=r"\[web\] allowed_hosts must be a list"):
            configuration.load(["-c", str(tmp_path)], {})
