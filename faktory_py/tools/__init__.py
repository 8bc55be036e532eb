"""Tools that talk to a server from outside: the conformance checker (`conformance`), the
load generator (`loadgen`), and running servers as processes (`processes`). The runtime never
imports them."""
