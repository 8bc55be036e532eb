"""The Workflows tab `/held` (protocol/spec.md §14.7): held jobs with how many dependencies they
wait on, a search by jid with that job's edges, and the `held` MUTATE actions as POSTs; a job deleted from its queue in
the web UI resolves its dependents as `deleted` (C-T5's web UI part)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from faktory_py.features.batches.feature import Batches
from faktory_py.features.workflows.feature import Workflows
from faktory_py.util.timefmt import format_time
from test_web_http import config, push, request


async def test_the_workflows_tab_lists_searches_and_acts(tmp_path: Path, running) -> None:
    server = await running(config(tmp_path))
    workflows = server.dispatcher.manager.features.find(Workflows)
    assert workflows is not None
    push(server, "up" * 6)
    for name in ("x", "y", "z"):
        push(server, name * 12, custom={"after": ["up" * 6, "never-pushed"]})
    page = await request(server, "GET", "/held")
    assert page.status == 200 and "Held jobs <small>(3)</small>" in page.body
    assert 'href="/held" class="active" aria-current="page">Workflows' in page.body
    assert "2 of 2" in page.body and "up" * 6 in page.body
    found = await request(server, "GET", "/held?jid=" + "y" * 12)
    assert "y" * 12 in found.body and "x" * 12 not in found.body
    assert f'<code>{"y" * 12}</code>: held' in found.body
    assert f'<td><a href="/held?jid={"up" * 6}"><code>{"up" * 6}</code></a></td><td>enqueued</td>' in found.body
    assert "<td>unknown</td>" in found.body  # never-pushed
    upstream = await request(server, "GET", "/held?jid=" + "up" * 6)
    assert f'<code>{"up" * 6}</code>: enqueued' in upstream.body
    assert all(f'<code>{name * 12}</code></a>' in upstream.body for name in "xyz")  # its dependents
    assert (await request(server, "POST", "/held", "action=explode&key=all")).status == 400
    killed = await request(server, "POST", "/held", f"action=kill&key={'x' * 12}")
    assert (killed.status, killed.headers["location"]) == (302, "/held")
    assert server.dispatcher.manager.store.set_entry("dead", "x" * 12) is not None
    await request(server, "POST", "/held", f"action=requeue&key={'y' * 12}")
    assert [job["jid"] for job in server.dispatcher.manager.store.queued("default")] == ["up" * 6, "y" * 12]
    assert sorted(workflows.held) == ["z" * 12]
    # the upstream deleted from its queue: z (policy success) is killed at once
    await request(server, "POST", "/queues?name=default", f"jid={'up' * 6}")
    entry = server.dispatcher.manager.store.set_entry("dead", "z" * 12)
    assert entry is not None and entry[1]["failure"]["message"] == f"dependency {'up' * 6} deleted"
    assert "No held jobs" in (await request(server, "GET", "/held")).body


async def test_a_job_page_links_to_its_edges(tmp_path: Path, running) -> None:
    server = await running(config(tmp_path))
    manager = server.dispatcher.manager
    push(server, "k" * 12, custom={"after": ["never-pushed"], "after_timeout": 1})
    manager.mutate({"cmd": "kill", "target": "held"}, server.dispatcher.clock.now())
    entry = manager.store.set_entry("dead", "k" * 12)
    assert entry is not None
    page = await request(server, "GET", "/morgue?key=" + quote(f"{format_time(entry[0])}|{'k' * 12}"))
    assert page.status == 200 and f'href="/held?jid={"k" * 12}" id="edges"' in page.body


async def test_a_batch_dependency_links_to_its_batch(tmp_path: Path, running) -> None:
    server = await running(config(tmp_path))
    batches = server.dispatcher.manager.features.find(Batches)
    assert batches is not None
    bid, ops = batches.new({"success": {"jobtype": "Ok", "args": []}}, "", server.dispatcher.clock.now())
    server.dispatcher.manager.store.commit(ops)
    push(server, "w" * 12, custom={"after": [{"bid": bid}]})
    found = await request(server, "GET", "/held?jid=" + "w" * 12)
    assert f'<td>batch <a href="/batches/{bid}"><code>{bid}</code></a></td><td>pending</td>' in found.body
