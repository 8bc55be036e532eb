"""The web UI (Faktory's dashboard) served next to the command port, in the same process.

`state` (the server's state as the pages read and change it), `app` (routes and actions),
`pages` (the pages features add), `views` (page data as pure functions), `urls` (names in
query strings and form values), `auth` (Basic auth and the cross-origin guard), `hosts` (the
Host allow-list), `headers` (security headers), `proxy` (`X-Script-Name`), `serve`
(Hypercorn's trio worker).
"""
