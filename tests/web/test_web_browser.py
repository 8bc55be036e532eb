"""The web UI in a real browser: Debian's Chromium driven by Playwright, against a real server process.

Each test clicks through the UI as a person would and then checks the effect where it
matters, through the protocol with real client libraries: a job retried from the Retries
page is fetched by a worker (cdrx `faktory`), a paused queue gives FETCH nothing, a quieted
worker's next BEAT is answered `{"state":"quiet"}` (pyfaktory). Waiting is Playwright's
auto-waiting `expect` or polling with a deadline, never a fixed sleep.

Screenshots of the dashboard and the retries page go to `tests/artifacts/` (git-ignored;
`FAKTORY_PY_ARTIFACTS` overrides it) for CI to keep; the Throttles and Cron tabs' go to their
test's tmp dir (pytest keeps the last runs').
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from faktory._proto import Connection
from pyfaktory import Client
from pyfaktory.util.enums import State

from helpers import ROOT
from helpers.servers import ServerProcess
from faktory_py.tools import processes
from helpers.rawclient import RawClient, new_jid
from helpers.toolchain import Toolchain

#: Chromium's own background traffic (updates, sync, QUIC probes) has nowhere to go here.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CHROMIUM = "/usr/bin/chromium"
PASSWORD = "webpw"

pytestmark = [
    # pyfaktory's heartbeat thread may race its own disconnect (see test_real_python_clients.py)
    pytest.mark.filterwarnings(
        r"ignore:Exception in thread .*\(_heartbeat\)[\s\S]*Client state is State\.(DISCONNECTED|END) "
        r"while ._beat. is only valid in the states:pytest.PytestUnhandledThreadExceptionWarning"),
]


def chromium() -> Toolchain:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return Toolchain("Chromium via Playwright", problem="the playwright package is not installed")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return Toolchain("Chromium via Playwright", problem=f"{CHROMIUM} is missing (apt-get install chromium)")
    return Toolchain("Chromium via Playwright", CHROMIUM)


def artifacts_dir() -> Path:
    path = Path(os.environ.get("FAKTORY_PY_ARTIFACTS") or ROOT / "tests" / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


# --- fixtures --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    executable = chromium().require()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def web_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., ServerProcess]]:
    yield from processes.factory(ServerProcess, tmp_path_factory.mktemp("web"), "server", web=True)


@pytest.fixture(scope="module")
def server(web_servers) -> ServerProcess:
    return web_servers()


@contextmanager
def watched_page(browser: Any, base_url: str) -> Iterator[Any]:
    """A page of a new browser context on `base_url`, failing the test on any JavaScript error
    or Content-Security-Policy violation it saw."""
    context = browser.new_context(base_url=base_url, viewport={"width": 1200, "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    # the UI's Content-Security-Policy must not block anything its own pages use
    opened.on("console", lambda message: errors.append(message.text)
              if message.type == "error" and "Content Security Policy" in message.text else None)
    yield opened
    context.close()
    assert errors == [], f"JavaScript errors: {errors}"


@pytest.fixture
def page(browser, server: ServerProcess) -> Iterator[Any]:
    with watched_page(browser, server.web_url) as opened:
        yield opened


@pytest.fixture
def raw(server: ServerProcess) -> Iterator[RawClient]:
    with server.client() as client:
        assert client.handshake() == b"OK"
        yield client


def worker(server: ServerProcess, wid: str | None = None) -> Connection:
    """A worker connection of the cdrx `faktory` client (what its Worker fetches with)."""
    wid = wid or "web-" + new_jid()[:12]
    conn = Connection(server.url, worker_id=wid, labels=["browser-test"], timeout=10)
    assert conn.connect(worker_id=wid) is True
    return conn


def push(raw: RawClient, queue: str, jid: str | None = None, **fields: Any) -> str:
    jid = jid or new_jid()
    assert raw.push({"jid": jid, "jobtype": "WebJob", "args": [1, "two"], "queue": queue, **fields}) == b"OK"
    return jid


def failed(raw: RawClient, queue: str, retry_count: int = 10, retry: int = 25, jid: str | None = None) -> str:
    """A job that failed into the retries set (or dead, once out of retries).

    It arrives with a previous failure, so its next retry is retry_count⁴ s away (~4 h for
    10): the timer cannot retry it behind the test's back.
    """
    jid = push(raw, queue, jid, retry=retry, failure={"retry_count": retry_count - 1, "remaining": retry - retry_count,
                                                 "failed_at": "2026-01-01T00:00:00Z"})
    assert raw.fetch(queue)["jid"] == jid
    fail = {"jid": jid, "errtype": "RuntimeError", "message": "boom", "backtrace": ["app.rb:1"]}
    assert raw.command("FAIL " + json.dumps(fail)) == b"OK"
    return jid


def nav(page: Any, name: str) -> None:
    """Follow a link of the navigation bar (the dashboard's cards link to the same pages)."""
    page.locator("header nav").get_by_role("link", name=name, exact=True).click()


def sizes(raw: RawClient) -> dict[str, int]:
    return raw.info()["faktory"]["sets"]


# --- tests -----------------------------------------------------------------------------

def test_every_page_loads(page, server: ServerProcess, raw: RawClient) -> None:
    from playwright.sync_api import expect

    queue = "pages"
    waiting = push(raw, queue)
    retrying = failed(raw, "pages-retry")
    dead = failed(raw, "pages-dead", retry_count=1, retry=1)
    scheduled = push(raw, queue, at="2099-01-01T00:00:00Z")
    bid = raw.command("BATCH NEW " + json.dumps({"description": "nightly", "success": {"jobtype": "Done", "args": []}}))
    bid = bid.decode() if isinstance(bid, bytes) else bid
    push(raw, "pages-batch", custom={"bid": bid})
    assert raw.command(f"BATCH COMMIT {bid}") == b"OK"
    conn = worker(server)
    try:
        response = page.goto("/")
        assert response.status == 200
        expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
        expect(page.locator("#retries")).to_have_text(str(sizes(raw)["retries"]))
        # the real-time graph polls /stats: the page counts successful polls
        expect(page.locator("body")).to_have_attribute("data-polls", re.compile(r"^[1-9]"))
        expect(page.locator("#history-chart canvas")).to_have_count(1)
        page.screenshot(path=artifacts_dir() / "dashboard.png", full_page=True)
        page.get_by_role("link", name="90 days").click()
        expect(page).to_have_url(re.compile(r"days=90$"))

        nav(page, "Busy")
        expect(page.locator(f'#processes tr[data-wid="{conn.worker_id}"]')).to_contain_text("browser-test")

        nav(page, "Queues")
        expect(page.locator('#queues tr[data-queue="pages"] .size')).to_have_text("1")
        page.get_by_role("link", name="pages", exact=True).click()
        expect(page.locator("#jobs")).to_contain_text(waiting)

        nav(page, "Retries")
        expect(page.locator(f'#entries tr[data-jid="{retrying}"]')).to_contain_text("RuntimeError: boom")
        page.screenshot(path=artifacts_dir() / "retries.png", full_page=True)
        page.locator(f'#entries tr[data-jid="{retrying}"] td:nth-child(2) a').click()
        expect(page.locator("#job")).to_contain_text(retrying)
        expect(page.locator("#job")).to_contain_text("app.rb:1")

        nav(page, "Scheduled")
        page.locator(f'#entries tr[data-jid="{scheduled}"] td:nth-child(2) a').click()
        expect(page.locator("#job")).to_contain_text("2099-01-01T00:00:00Z")

        nav(page, "Dead")
        page.locator(f'#entries tr[data-jid="{dead}"] td:nth-child(2) a').click()
        expect(page.locator("#job")).to_contain_text(dead)

        nav(page, "Batches")
        expect(page.locator(f'#batches tr[data-bid="{bid}"]')).to_contain_text("nightly")
        page.get_by_role("link", name=bid).click()
        expect(page.locator("#batch")).to_contain_text("Success callback")
        expect(page.locator("#batch .callback-state").nth(1)).to_have_text("pending")

        nav(page, "Debug")
        expect(page.locator("#debug")).to_contain_text(str(server.data_dir))

        stats = page.goto("/stats")
        assert stats.headers["cache-control"] == "no-cache"
        assert stats.json()["faktory"]["sets"]["dead"] >= 1
        health = page.goto("/health")
        assert health.json()["server"]["faktory_version"] == "1.9.4"
    finally:
        conn.disconnect()
    print(f"screenshots in {artifacts_dir()}")


def test_retry_from_retries_is_fetched_by_a_worker(page, server: ServerProcess, raw: RawClient) -> None:
    from playwright.sync_api import expect

    jid = failed(raw, "retry-now")
    other = failed(raw, "retry-now")
    page.goto("/retries")
    row = page.locator(f'#entries tr[data-jid="{jid}"]')
    row.get_by_role("checkbox").check()
    page.get_by_role("button", name="Retry now", exact=True).click()
    expect(row).to_have_count(0)
    expect(page.locator(f'#entries tr[data-jid="{other}"]')).to_have_count(1)

    conn = worker(server)
    try:
        job = conn.fetch(["retry-now"])
        assert job is not None and job["jid"] == jid
        assert job["failure"]["retry_count"] == 10  # the same job, with its history
        assert conn.fetch(["retry-now"]) is None  # only the selected one was retried
    finally:
        conn.disconnect()


def test_kill_moves_a_retry_to_dead(page, raw: RawClient) -> None:
    from playwright.sync_api import expect

    jid = failed(raw, "kill-me")
    page.goto("/retries")
    page.locator(f'#entries tr[data-jid="{jid}"]').get_by_role("checkbox").check()
    page.get_by_role("button", name="Kill", exact=True).click()
    expect(page.locator(f'#entries tr[data-jid="{jid}"]')).to_have_count(0)

    nav(page, "Dead")
    expect(page.locator(f'#entries tr[data-jid="{jid}"]')).to_contain_text("RuntimeError: boom")
    # and from its detail page back to its queue
    page.locator(f'#entries tr[data-jid="{jid}"] td:nth-child(2) a').click()
    page.get_by_role("button", name="Retry now", exact=True).click()
    expect(page).to_have_url(re.compile(r"/morgue$"))
    expect(page.locator(f'#entries tr[data-jid="{jid}"]')).to_have_count(0)
    page.goto("/queues?name=kill-me")
    expect(page.locator("#jobs")).to_contain_text(jid)


def test_paused_queue_gives_fetch_nothing(page, server: ServerProcess, raw: RawClient) -> None:
    from playwright.sync_api import expect

    jid = push(raw, "pausable")
    page.goto("/queues")
    row = page.locator('#queues tr[data-queue="pausable"]')
    row.get_by_role("button", name="Pause").click()
    expect(row).to_contain_text("paused")

    conn = worker(server)
    try:
        assert conn.fetch(["pausable"]) is None  # after FETCH's 2 s wait: nothing
        row.get_by_role("button", name="Resume").click()
        expect(row).not_to_contain_text("paused")
        assert conn.fetch(["pausable"])["jid"] == jid
    finally:
        conn.disconnect()


def test_quiet_worker_gets_quiet_on_next_beat(page, server: ServerProcess) -> None:
    from playwright.sync_api import expect

    wid = "web-quiet-" + new_jid()[:8]
    client = Client(faktory_url=server.url, role="consumer", worker_id=wid, beat_period=5, timeout=10)
    assert client.connect() is True
    try:
        page.goto("/busy")
        row = page.locator(f'#processes tr[data-wid="{wid}"]')
        row.get_by_role("button", name="Quiet").click()
        expect(row.locator(".badge")).to_have_text("quiet")
        with client.rlock:
            client._beat()  # what its heartbeat thread sends; it parses the bulk state reply
        assert client.state == State.QUIET
    finally:
        client.disconnect()


def test_busy_requeue_and_kill_end_a_zombie_reservation(page, server: ServerProcess, raw: RawClient) -> None:
    """A job a worker fetched and will never ACK: Requeue on the Busy page puts it back in its
    queue, where a worker fetches it again; Kill then moves it to the dead set. Another
    site's page posting the same form is refused (A-T16)."""
    from playwright.sync_api import expect

    jid = push(raw, "zombies")
    conn = worker(server)
    try:
        assert conn.fetch(["zombies"])["jid"] == jid
        attack = (f'<form method="post" action="{server.web_url}/busy"><input name="action" value="kill">'
                  f'<input name="jid" value="{jid}"></form><script>document.forms[0].submit()</script>')
        page.route("http://evil.test/**", lambda route: route.fulfill(content_type="text/html", body=attack))
        with page.expect_response(f"{server.web_url}/busy") as refused:
            page.goto("http://evil.test/")
        assert refused.value.status == 403
        page.goto("/busy")
        row = page.locator(f'#working tr[data-jid="{jid}"]')
        row.get_by_role("button", name="Requeue").click()
        expect(row).to_have_count(0)
        assert conn.fetch(["zombies"])["jid"] == jid  # back in its queue, fetched again
        page.goto("/busy")
        row.get_by_role("button", name="Kill").click()
        expect(row).to_have_count(0)
        nav(page, "Dead")
        expect(page.locator(f'#entries tr[data-jid="{jid}"]')).to_contain_text("Killed: killed by an operator")
    finally:
        conn.disconnect()


def test_password_requires_basic_auth(browser, web_servers) -> None:
    from playwright.sync_api import expect

    from playwright.sync_api import Error as PlaywrightError

    protected = web_servers(password=PASSWORD)
    anonymous = browser.new_context(base_url=protected.web_url)
    try:
        page = anonymous.new_page()
        seen: list[tuple[int, str | None]] = []
        page.on("response", lambda r: seen.append((r.status, r.headers.get("www-authenticate"))))
        # the challenge reaches the browser, which has no credentials to answer it with
        with pytest.raises(PlaywrightError, match="ERR_INVALID_AUTH_CREDENTIALS"):
            page.goto("/")
        assert seen == [(401, 'Basic realm="Faktory"')]
        assert anonymous.new_page().goto("/health").status == 200  # load balancers probe it without credentials
    finally:
        anonymous.close()

    wrong = browser.new_context(base_url=protected.web_url, http_credentials={"username": "x", "password": "nope"})
    try:
        assert wrong.new_page().goto("/queues").status == 401
    finally:
        wrong.close()

    # any username, the right password: pages and actions work
    with RawClient(protected.port) as raw:
        assert raw.handshake(password=PASSWORD) == b"OK"
        push(raw, "guarded")
    allowed = browser.new_context(base_url=protected.web_url,
                                  http_credentials={"username": "admin", "password": PASSWORD})
    try:
        page = allowed.new_page()
        assert page.goto("/queues").status == 200
        row = page.locator('#queues tr[data-queue="guarded"]')
        row.get_by_role("button", name="Pause").click()
        expect(row).to_contain_text("paused")
    finally:
        allowed.close()


def test_cross_site_post_is_refused(page, server: ServerProcess, raw: RawClient) -> None:
    """Another site's page submits a form to the UI: the browser marks it cross-site, we refuse."""
    jid = push(raw, "targeted")
    attack = (f'<form method="post" action="{server.web_url}/queues?name=targeted">'
              '<input name="action" value="pause"></form><script>document.forms[0].submit()</script>')
    page.route("http://evil.test/**", lambda route: route.fulfill(content_type="text/html", body=attack))
    with page.expect_response(f"{server.web_url}/queues?name=targeted") as refused:
        page.goto("http://evil.test/")
    assert refused.value.status == 403
    assert refused.value.request.headers.get("origin") == "http://evil.test"

    conn = worker(server)
    try:
        assert conn.fetch(["targeted"])["jid"] == jid  # not paused
    finally:
        conn.disconnect()


def test_queue_paging_delete_selected_and_delete_queue(page, raw: RawClient) -> None:
    from playwright.sync_api import expect

    jids = [push(raw, "paged") for _ in range(30)]
    page.goto("/queues?name=paged")
    expect(page.locator(".pager")).to_contain_text("page 1 of 2")
    expect(page.locator("#jobs tbody tr")).to_have_count(25)
    page.get_by_role("link", name="next ›").click()
    expect(page.locator("#jobs tbody tr")).to_have_count(5)
    expect(page.locator("#jobs")).to_contain_text(jids[-1])

    page.get_by_role("checkbox", name="select all").check()  # app.js ticks every row
    page.get_by_role("button", name="Delete selected").click()
    expect(page).to_have_url(re.compile(r"/queues\?name=paged$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("(25)")
    assert raw.info()["faktory"]["queues"]["paged"] == 25

    page.on("dialog", lambda dialog: dialog.accept())  # "Delete queue paged?"
    page.get_by_role("button", name="Delete queue").click()
    expect(page).to_have_url(re.compile(r"/queues$"))
    expect(page.locator('#queues tr[data-queue="paged"]')).to_have_count(0)
    assert "paged" not in raw.info()["faktory"]["queues"]


def test_scheduled_job_added_to_its_queue_now(page, raw: RawClient) -> None:
    from playwright.sync_api import expect

    jid = push(raw, "later", at="2099-01-01T00:00:00Z")
    page.goto("/scheduled")
    page.locator(f'#entries tr[data-jid="{jid}"] td:nth-child(2) a').click()
    page.get_by_role("button", name="Add to queue").click()
    expect(page).to_have_url(re.compile(r"/scheduled$"))
    expect(page.locator(f'#entries tr[data-jid="{jid}"]')).to_have_count(0)
    assert raw.fetch("later")["jid"] == jid


def test_stop_all_workers_gets_terminate_on_next_beat(page, server: ServerProcess) -> None:
    from playwright.sync_api import expect

    clients = [Client(faktory_url=server.url, role="consumer", worker_id=f"web-stop-{i}-{new_jid()[:6]}",
                      beat_period=5, timeout=10) for i in range(2)]
    for client in clients:
        assert client.connect() is True
    try:
        page.goto("/busy")
        page.get_by_role("button", name="Stop all").click()
        for client in clients:
            expect(page.locator(f'#processes tr[data-wid="{client.worker_id}"] .badge')).to_have_text("terminate")
            with client.rlock:
                client._beat()
            assert client.state == State.TERMINATING
    finally:
        for client in clients:
            client.disconnect()


def test_dashboard_follows_the_server_live(page, raw: RawClient) -> None:
    """The cards and the real-time graph come from polling /stats: a job ACKed meanwhile shows up."""
    from playwright.sync_api import expect

    page.goto("/")
    expect(page.locator("body")).to_have_attribute("data-polls", re.compile(r"^[1-9]"))
    page.locator("#interval").evaluate("(el) => { el.value = '2'; el.dispatchEvent(new Event('input')); }")
    expect(page.locator("#interval-value")).to_have_text("2")
    before = int(page.locator("#processed").inner_text())
    jid = push(raw, "live")
    assert raw.fetch("live")["jid"] == jid
    assert raw.command("ACK " + json.dumps({"jid": jid})) == b"OK"
    expect(page.locator("#processed")).to_have_text(str(before + 1), timeout=10_000)
    # the real-time series has points from the polls (two polls make the first point)
    expect(page.locator("body")).to_have_attribute("data-polls", re.compile(r"^([3-9]|\d\d+)$"), timeout=10_000)


def test_batch_callbacks_state_follows_the_work(page, server: ServerProcess, raw: RawClient) -> None:
    from playwright.sync_api import expect

    bid = raw.command("BATCH NEW " + json.dumps({"description": "one job", "success": {"jobtype": "Done", "args": [],
                                                                                    "queue": "batch-cb"}})).decode()
    member = push(raw, "batch-work", custom={"bid": bid})
    assert raw.command(f"BATCH COMMIT {bid}") == b"OK"
    page.goto(f"/batches/{bid}")
    success = page.locator("#batch .callback-state").nth(1)
    expect(success).to_have_text("pending")

    conn = worker(server)
    try:
        assert conn.fetch(["batch-work"])["jid"] == member
        conn.reply("ACK", {"jid": member})
        assert next(conn.get_message()) == "OK"
        page.reload()
        expect(success).to_have_text("enqueued")
        callback = conn.fetch(["batch-cb"])
        assert callback["custom"]["_bid"] == bid
        conn.reply("ACK", {"jid": callback["jid"]})
        assert next(conn.get_message()) == "OK"
        page.reload()
        expect(success).to_have_text("finished")
        expect(page.locator("#batch")).to_contain_text("done")
    finally:
        conn.disconnect()


def test_web_port_speaks_tls_with_the_config_dirs_certificate(browser, web_servers) -> None:
    import trustme

    tls = web_servers(start=False)
    cert = trustme.CA().issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(str(tls.conf_dir / "private.key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tls.conf_dir / "public.cert.pem"))
    tls.start()
    assert tls.web_url.startswith("https://")
    context = browser.new_context(base_url=tls.web_url, ignore_https_errors=True)  # a test CA
    try:
        page = context.new_page()
        response = page.goto("/")
        assert response.status == 200
        assert response.security_details()["protocol"].startswith("TLS 1.")
        from playwright.sync_api import expect
        expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    finally:
        context.close()


def test_behind_a_prefixing_proxy(browser, server: ServerProcess, raw: RawClient) -> None:
    """With `X-Script-Name: /faktory` every link, form and redirect the browser follows keeps the prefix."""
    from playwright.sync_api import expect

    jid = failed(raw, "proxied")
    context = browser.new_context(base_url=server.web_url, extra_http_headers={"X-Script-Name": "/faktory"})
    try:
        page = context.new_page()
        page.goto("/faktory/")
        nav(page, "Retries")
        expect(page).to_have_url(re.compile(r"/faktory/retries$"))
        page.locator(f'#entries tr[data-jid="{jid}"]').get_by_role("checkbox").check()
        page.get_by_role("button", name="Delete", exact=True).click()
        expect(page).to_have_url(re.compile(r"/faktory/retries$"))  # the redirect kept it
        expect(page.locator(f'#entries tr[data-jid="{jid}"]')).to_have_count(0)
        assert page.evaluate("getComputedStyle(document.querySelector('header')).display") == "flex"  # CSS came
    finally:
        context.close()


def test_retry_all(page, raw: RawClient) -> None:
    from playwright.sync_api import expect

    jids = {failed(raw, "retry-all") for _ in range(3)}
    page.goto("/retries")
    page.get_by_role("button", name="Retry all").click()
    expect(page.locator("#entries")).to_contain_text("No jobs")
    assert {raw.fetch("retry-all")["jid"] for _ in jids} == jids


def test_a_jid_with_slashes_and_the_queue_dot_dot_have_pages(page, raw: RawClient) -> None:
    """No path segment can carry these names (browsers resolve `..`, servers decode `%2F`): the
    retry's detail page and the queue's page open, and their buttons act on exactly them."""
    from playwright.sync_api import expect

    jid = failed(raw, "..", jid=f"web/{new_jid()[:8]}/../?x=1#frag%2F")
    other = push(raw, "..")
    page.goto("/retries")
    page.locator(f'#entries tr[data-jid="{jid}"] td:nth-child(2) a').click()
    expect(page.locator("#job")).to_contain_text(jid)
    expect(page.locator("#job")).to_contain_text("RuntimeError: boom")
    page.get_by_role("button", name="Retry now", exact=True).click()
    expect(page).to_have_url(re.compile(r"/retries$"))
    expect(page.locator(f'#entries tr[data-jid="{jid}"]')).to_have_count(0)

    nav(page, "Queues")
    page.locator('#queues tr[data-queue=".."]').get_by_role("link", name="..", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Queue .. (2)")
    expect(page.locator("#jobs")).to_contain_text(jid)  # retried into its queue
    page.get_by_role("checkbox", name=f"select {jid}").check()
    page.get_by_role("button", name="Delete selected").click()
    expect(page).to_have_url(re.compile(r"/queues\?name=\.\.$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("(1)")
    page.get_by_role("button", name="Pause").click()
    row = page.locator('#queues tr[data-queue=".."]')
    expect(row).to_contain_text("paused")
    row.get_by_role("button", name="Resume").click()
    expect(row).not_to_contain_text("paused")
    assert raw.info()["faktory"]["queues"][".."] == 1
    assert raw.fetch("..")["jid"] == other  # the one not selected


THROTTLES_TOML = """\
[throttles]
"image-processing" = { concurrency = 2, timeout = 60, rate = { limit = 10, period = 60 } }
bulk = { worker = 3, timeout = 30, colour = "red" }
"""


def test_throttles_tab_shows_a_full_throttle(browser, web_servers, tmp_path: Path) -> None:
    """A-T16: with `image-processing` at its limit (2 of 2 held, 3 waiting) the tab shows the
    numbers THROTTLE STATUS gives; the screenshot goes to the test's tmp dir."""
    from playwright.sync_api import expect

    throttled = web_servers(start=False)
    (throttled.conf_dir / "conf.d").mkdir(exist_ok=True)
    (throttled.conf_dir / "conf.d" / "throttles.toml").write_text(THROTTLES_TOML)
    throttled.start()
    with RawClient(throttled.port) as producer, RawClient(throttled.port) as one, \
            RawClient(throttled.port) as two:
        for client, wid in ((producer, None), (one, "worker-one"), (two, "worker-two")):
            assert client.handshake(**({"wid": wid} if wid else {})) == b"OK"
        jids = [push(producer, "image-processing") for _ in range(5)]
        push(producer, "bulk")
        assert [one.fetch("image-processing")["jid"], two.fetch("image-processing")["jid"]] == jids[:2]
        assert one.fetch("bulk") is not None
        status = json.loads(producer.command("THROTTLE STATUS"))
    assert (status["image-processing"]["in_use"], status["image-processing"]["waiting"]) == (2, 3)

    with watched_page(browser, throttled.web_url) as page:
        page.goto("/")
        nav(page, "Throttles")
        expect(page.get_by_role("heading", level=1)).to_have_text("Throttles (2)")
        full = page.locator('#throttles tr[data-queue="image-processing"]')
        expect(full.locator(".in-use")).to_have_text("2 / 2 full")
        expect(full.locator(".waiting")).to_have_text("3")
        expect(full.locator(".held-by")).to_contain_text("worker-one 1")
        expect(full.locator(".held-by")).to_contain_text("worker-two 1")
        expect(full.locator(".timeout")).to_have_text("60 s")
        expect(full.locator(".rate")).to_contain_text("2 / 10 in the last 60 s")
        expect(full.locator(".rate .next-grant")).to_have_text("next opening: —")
        bulk = page.locator('#throttles tr[data-queue="bulk"]')
        expect(bulk.locator(".worker")).to_have_text("3")
        expect(bulk.locator(".rate")).to_have_text("—")
        expect(bulk.locator(".held-by")).to_have_text("worker-one 1 / 3")
        expect(bulk.locator(".warnings")).to_have_text('config: throttles.bulk: unknown key "colour" ignored')
        # the stylesheet came (the CSP let it): a full throttle's count is bold
        assert full.locator(".in-use").evaluate("(el) => getComputedStyle(el).fontWeight") == "700"
        page.screenshot(path=tmp_path / "throttles.png", full_page=True)
        full.get_by_role("link", name="image-processing").click()
        expect(page.get_by_role("heading", level=1)).to_contain_text("Queue image-processing (3)")
    print(f"screenshot: {tmp_path / 'throttles.png'}")


CRON_TOML = """
[[cron]]
  name = "every-second"
  schedule = "* * * * * *"
  [cron.job]
    type = "CronJob"
    queue = "cron"
    args = [1]

[[cron]]
  name = "nightly"
  schedule = "30 2 * * *"
  timezone = "America/New_York"
  [cron.job]
    type = "Nightly"
"""


def test_cron_tab_and_history(browser, web_servers, tmp_path: Path) -> None:
    """B-T12: the Cron tab shows each entry's schedule, next run and last fire; an entry's page
    lists its fires with their outcome (one ACKed by a worker: `success`), and "Enqueue now"
    adds one to the history and its queue. Screenshots of both go to the test's tmp dir."""
    from playwright.sync_api import expect

    server = web_servers(start=False)
    (server.conf_dir / "conf.d").mkdir(exist_ok=True)
    (server.conf_dir / "conf.d" / "cron.toml").write_text(CRON_TOML)
    server.start()
    conn = worker(server)
    try:
        job = conn.fetch(["cron"])  # the first fire, within about a second
        assert job is not None and job["custom"]["_cron"]["id"] == "every-second"
        conn.reply("ACK", {"jid": job["jid"]})
        assert next(conn.get_message()) == "OK"
    finally:
        conn.disconnect()

    with watched_page(browser, server.web_url) as page:
        page.goto("/")
        nav(page, "Cron")
        expect(page.get_by_role("heading", level=1)).to_have_text("Cron (2)")
        nightly = page.locator('#cron tr[data-id="nightly"]')
        expect(nightly.locator(".schedule")).to_contain_text("30 2 * * *")
        expect(nightly.locator(".timezone")).to_have_text("America/New_York")
        expect(nightly.locator(".next-run")).to_contain_text(re.compile(r"^\d{4}-\d\d-\d\dT(06|07):30:00Z"))
        expect(nightly.locator(".next-run .local")).to_have_text(re.compile(r" 02:30:00 E[SD]T$"))
        expect(nightly.locator(".next-run .countdown")).to_have_text(re.compile(r"^in \d"))
        expect(nightly.locator(".last-fired")).to_have_text("—")
        second = page.locator('#cron tr[data-id="every-second"]')
        expect(second.locator(".last-fired")).to_contain_text(re.compile(r"\d\d:\d\d:\d\dZ"))
        page.screenshot(path=tmp_path / "cron.png", full_page=True)
        second.get_by_role("link", name="every-second").click()
        expect(page.get_by_role("heading", level=1)).to_contain_text("every-second")
        history = page.locator("#history")
        expect(history.locator(f'tr:has(code:text-is("{job["jid"]}")) .outcome')).to_have_text("success")
        nightly_page = page.goto("/cron/nightly")
        assert nightly_page is not None and nightly_page.status == 200
        expect(page.locator("#history")).to_contain_text("Nothing fired yet.")
        page.get_by_role("button", name="Enqueue now").click()
        expect(page.locator("#history .tick")).to_have_text("(enqueued now)")
        page.goto("/cron/every-second")
        page.screenshot(path=tmp_path / "cron-history.png", full_page=True)
    with RawClient(server.port) as raw:
        assert raw.handshake() == b"OK"
        assert raw.info()["faktory"]["queues"]["default"] == 1
    print(f"screenshots: {tmp_path / 'cron.png'}, {tmp_path / 'cron-history.png'}")
