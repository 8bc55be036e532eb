"""The web UI (Faktory's dashboard) served next to the command port, in the same process.

`app` (routes and actions), `views` (page data as pure functions), `auth` (Basic auth and
the cross-origin guard), `proxy` (`X-Script-Name`), `serve` (Hypercorn's trio worker).
"""
