// Package api is the protocol between aigate's clients (run, watch, status)
// and the agent: length-prefixed JSON messages on a unix socket, the client
// calls, the server's framing and the validation of what a client may send.
// The agent decides what a request means; this package makes sure that what
// reaches it is well-formed and bounded. docs/agent.md documents the wire
// format.
package api
