package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestTurns checks that the mock plays one step per turn, counted from the
// tool results in the request, and ends with the text reply; and that a
// request without tools gets the text reply at once.
func TestTurns(t *testing.T) {
	h := serve(steps{"ls", "git status --short"})
	post := func(body string) string {
		t.Helper()
		rec := httptest.NewRecorder()
		h(rec, httptest.NewRequest(http.MethodPost, "/v1/messages", strings.NewReader(body)))
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		return rec.Body.String()
	}
	result := `{"role":"user","content":[{"type":"tool_result","content":"x"}]}`
	prompt := `{"role":"user","content":"hi"}`
	for _, c := range []struct {
		body, want, not string
	}{
		{`{"tools":[{}],"messages":[` + prompt + `]}`, `\"command\":\"ls\"`, "All done."},
		{`{"tools":[{}],"messages":[` + prompt + `,` + result + `]}`, `\"command\":\"git status --short\"`, "All done."},
		{`{"tools":[{}],"messages":[` + prompt + `,` + result + `,` + result + `]}`, "All done.", "tool_use"},
		{`{"messages":[` + prompt + `]}`, "All done.", "tool_use"},
	} {
		got := post(c.body)
		if !strings.Contains(got, c.want) || strings.Contains(got, c.not) {
			t.Errorf("request %s: want %q and no %q in\n%s", c.body, c.want, c.not, got)
		}
	}
}
