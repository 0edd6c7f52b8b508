//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// claudeMock is a stand-in for the Anthropic Messages API that plays a
// prompt-injected model: each turn of the conversation answers with the
// next Bash command of steps, streamed as server-sent events the way the
// API streams tool_use blocks, then ends the turn with a text reply. Side
// requests without tools (titles, summaries) get a short text reply.
type claudeMock struct {
	t     *testing.T
	steps []string
	addr  string
	// before, when set, runs before the reply to conversation turn n (n ==
	// len(steps) is the final reply): the test synchronises on it.
	before func(n int)
	// reply, when set, plays the model instead of steps: given a
	// conversation request's system prompt and the tool results so far,
	// the tool to call and its input, or "" to end the turn.
	reply func(system string, results []string) (tool string, input any)

	mu      sync.Mutex
	results []string // tool_result contents seen, in order
	turns   int
	calls   int      // tool_use blocks sent, for their ids
	bearers []string // the Authorization bearer tokens of the Messages requests, in order
}

// bearersSeen are the bearer tokens the Messages requests came with.
func (m *claudeMock) bearersSeen() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.bearers...)
}

// claudeHome readies w for the real Claude Code with no scripted steps: a
// home outside /tmp (as Claude Code's own state wants), the default
// policy, and a mock API that the sandbox may reach.
func (w *world) claudeHome(t *testing.T) *claudeMock {
	t.Helper()
	w.homeOutsideTmp()
	w.defaults()
	mock := startClaudeMock(t, nil)
	w.aigate("allow", "net", "127.0.0.1:"+mock.port())
	return mock
}

func startClaudeMock(t *testing.T, steps []string) *claudeMock {
	t.Helper()
	m := &claudeMock{t: t, steps: steps}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m.addr = ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(m.serve)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return m
}

// port is the mock's TCP port.
func (m *claudeMock) port() string {
	_, p, _ := net.SplitHostPort(m.addr)
	return p
}

type mockRequest struct {
	System   json.RawMessage   `json:"system"`
	Tools    []json.RawMessage `json:"tools"`
	Messages []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
}

func (m *claudeMock) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/v1/messages") {
		// The CLI's connectivity check (HEAD /api/hello) and anything else.
		w.WriteHeader(http.StatusOK)
		return
	}
	if b, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		m.mu.Lock()
		m.bearers = append(m.bearers, b)
		m.mu.Unlock()
	}
	body, _ := io.ReadAll(r.Body)
	var req mockRequest
	if err := json.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var results []string
	for _, msg := range req.Messages {
		var blocks []struct {
			Type    string          `json:"type"`
			Content json.RawMessage `json:"content"`
		}
		if json.Unmarshal(msg.Content, &blocks) != nil {
			continue
		}
		for _, b := range blocks {
			if b.Type == "tool_result" {
				results = append(results, toolResultText(b.Content))
			}
		}
	}
	n := len(results)
	conversation := len(req.Tools) > 0
	if conversation {
		m.mu.Lock()
		m.results, m.turns = results, m.turns+1
		m.mu.Unlock()
		if m.before != nil {
			m.before(n)
		}
	}

	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	send := func(event string, v map[string]any) {
		v["type"] = event
		data, _ := json.Marshal(v)
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, data)
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
	send("message_start", map[string]any{"message": map[string]any{
		"id": fmt.Sprintf("msg_%d", n), "type": "message", "role": "assistant", "model": "claude-mock",
		"content": []any{}, "stop_reason": nil, "stop_sequence": nil,
		"usage": map[string]any{"input_tokens": 10, "output_tokens": 1},
	}})
	stop := "end_turn"
	var tool string
	var args any
	switch {
	case conversation && m.reply != nil:
		tool, args = m.reply(toolResultText(req.System), results)
	case conversation && n < len(m.steps):
		tool, args = "Bash", map[string]string{"command": m.steps[n], "description": "Check the setup"}
	}
	if tool != "" {
		input, _ := json.Marshal(args)
		m.mu.Lock()
		id := fmt.Sprintf("toolu_%02d", m.calls)
		m.calls++
		m.mu.Unlock()
		send("content_block_start", map[string]any{"index": 0, "content_block": map[string]any{
			"type": "tool_use", "id": id, "name": tool, "input": map[string]any{}}})
		send("content_block_delta", map[string]any{"index": 0, "delta": map[string]any{
			"type": "input_json_delta", "partial_json": string(input)}})
		stop = "tool_use"
	} else {
		send("content_block_start", map[string]any{"index": 0, "content_block": map[string]any{"type": "text", "text": ""}})
		send("content_block_delta", map[string]any{"index": 0, "delta": map[string]any{"type": "text_delta", "text": "All done."}})
	}
	send("content_block_stop", map[string]any{"index": 0})
	send("message_delta", map[string]any{"delta": map[string]any{"stop_reason": stop, "stop_sequence": nil},
		"usage": map[string]any{"output_tokens": 5}})
	send("message_stop", map[string]any{})
}

// toolResultText flattens a tool_result's content (a string or text blocks).
func toolResultText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var blocks []struct {
		Text string `json:"text"`
	}
	json.Unmarshal(raw, &blocks)
	var parts []string
	for _, b := range blocks {
		parts = append(parts, b.Text)
	}
	return strings.Join(parts, "\n")
}

// seen returns the tool results of the latest conversation turn.
func (m *claudeMock) seen() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.results...)
}
