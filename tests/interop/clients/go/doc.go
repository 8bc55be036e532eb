// Package conformance drives the Go Faktory client (github.com/contribsys/faktory/client)
// and faktory_worker_go against a Faktory-compatible server named by FAKTORY_URL.
//
// Every scenario of protocol/clients.md §9 that the Go client can drive is one Test
// function (TestS0Handshake, TestS1PushFetchAck, ...) in a *_test.go file here. The pytest
// wrapper tests/interop/test_client_go.py compiles this package once with `go test -c` and runs the
// binary once per scenario (`-test.run '^TestS1PushFetchAck$'`) against a fresh server.
package conformance
