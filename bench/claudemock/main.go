// Command claudemock is a stand-in for the Anthropic Messages API, for
// timing a whole `claude -p` task offline (bench/realwork.sh). It plays a
// model that runs a fixed list of Bash commands, one per turn, streamed as
// server-sent events the way the API streams tool_use blocks, then ends
// with a text reply ("All done."). Requests without tools (titles,
// summaries) get the text reply at once. It keeps no state: the turn is
// the number of tool results in the request, so concurrent or repeated
// sessions are all served the same way. internal/e2e's claudeMock is the
// tested original; this one is benign and has no test hooks.
//
//	claudemock -addr 127.0.0.1:0 -addr-file FILE -step 'ls' -step 'git status --short'
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
)

type steps []string

func (s *steps) String() string     { return strings.Join(*s, "; ") }
func (s *steps) Set(v string) error { *s = append(*s, v); return nil }

type request struct {
	Tools    []json.RawMessage `json:"tools"`
	Messages []struct {
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
}

// toolResults counts the tool_result blocks of a request's messages.
func toolResults(req request) int {
	n := 0
	for _, msg := range req.Messages {
		var blocks []struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(msg.Content, &blocks) != nil {
			continue
		}
		for _, b := range blocks {
			if b.Type == "tool_result" {
				n++
			}
		}
	}
	return n
}

func serve(cmds steps) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/v1/messages") {
			w.WriteHeader(http.StatusOK) // the CLI's connectivity check and anything else
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var req request
		if err := json.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		n := toolResults(req)
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
		if len(req.Tools) > 0 && n < len(cmds) {
			input, _ := json.Marshal(map[string]string{"command": cmds[n], "description": "Look at the project"})
			send("content_block_start", map[string]any{"index": 0, "content_block": map[string]any{
				"type": "tool_use", "id": fmt.Sprintf("toolu_%02d", n), "name": "Bash", "input": map[string]any{}}})
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
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	addrFile := flag.String("addr-file", "", "write the address listened on to this file once listening")
	var cmds steps
	flag.Var(&cmds, "step", "a Bash command the model runs, one turn each (repeatable)")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "claudemock:", err)
		os.Exit(1)
	}
	if *addrFile != "" {
		if err := os.WriteFile(*addrFile, []byte(ln.Addr().String()), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "claudemock:", err)
			os.Exit(1)
		}
	}
	if err := http.Serve(ln, serve(cmds)); err != nil {
		fmt.Fprintln(os.Stderr, "claudemock:", err)
		os.Exit(1)
	}
}
