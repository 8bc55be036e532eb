"""The trio server, and the composition root: `app` wires everything and runs the server's
life, `tcp` runs connections, `timers` the due timer and supervised background tasks;
`durability` writes the journal, `waiters` parks FETCHes, `clock` derives unix time from
trio's clock, `admission` and `fdlimit` bound connections. trio lives here (and in web/)."""
