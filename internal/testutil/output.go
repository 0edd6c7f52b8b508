package testutil

import (
	"bytes"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// SyncBuffer collects a process's output while the test reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Len is how much was written so far: an offset for Since.
func (s *SyncBuffer) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Len()
}

// Since is what was written after offset (an earlier Len).
func (s *SyncBuffer) Since(offset int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.b.Bytes()[min(offset, s.b.Len()):])
}

// WaitForFile waits up to limit until path exists, failing the test (with
// the process's log) when the process ends first (a value on exited) or
// the time is up.
func WaitForFile(t testing.TB, path string, limit time.Duration, exited <-chan error, log fmt.Stringer) {
	t.Helper()
	deadline := time.After(limit)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		select {
		case err := <-exited:
			t.Fatalf("aigate exited early (%v):\n%s", err, log.String())
		case <-deadline:
			t.Fatalf("%s did not appear:\n%s", path, log.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// WaitUntil polls cond until it holds, failing the test after d with what
// it waited for.
func WaitUntil(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
