package mask

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var secrets = []string{`sk-[A-Za-z0-9]{20,}`, `AKIA[0-9A-Z]{16}`, `ghp_[A-Za-z0-9]{36}`}

func matcher(t testing.TB, exprs ...string) *Matcher {
	t.Helper()
	var res []*regexp.Regexp
	for _, e := range exprs {
		res = append(res, regexp.MustCompile(e))
	}
	m, err := Compile(res)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

const (
	skKey  = "sk-abcdefghijklmnopqrstuvwxyz123456"
	awsKey = "AKIAIOSFODNN7EXAMPLE"
	ghKey  = "ghp_0123456789abcdefghijABCDEFGHIJ012345"
)

func TestMask(t *testing.T) {
	m := matcher(t, secrets...)
	for _, tc := range []struct {
		name, in, want string
		repl           string
	}{
		{"none", "hello, world\n", "hello, world\n", Marker},
		{"one", "token=" + skKey + "\n", "token=" + Marker + "\n", Marker},
		{"several", awsKey + " " + ghKey + "," + skKey, Marker + " " + Marker + "," + Marker, Marker},
		{"too short", "sk-short AKIA123", "sk-short AKIA123", Marker},
		{"width kept", "k=" + awsKey + ".", "k=" + strings.Repeat("*", len(awsKey)) + ".", ""},
		// The marker goes where the secret began; the colour changes
		// inside it stay.
		{"coloured halves", "sk-abcdefghij\x1b[31mklmnopqrstuvwxyz\x1b[0m!",
			Marker + "\x1b[31m\x1b[0m!", Marker},
		{"escape sequences kept", "\x1b[1;31m" + awsKey + "\x1b[0m", "\x1b[1;31m" + Marker + "\x1b[0m", Marker},
		{"window title", "\x1b]0;" + awsKey + "\x07done", "\x1b]0;" + Marker + "\x07done", Marker},
		{"title with ST", "\x1b]2;" + awsKey + "\x1b\\", "\x1b]2;" + Marker + "\x1b\\", Marker},
		{"non-ASCII around", "clé: " + awsKey + " — fin", "clé: " + Marker + " — fin", Marker},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(m.Mask([]byte(tc.in), tc.repl)); got != tc.want {
				t.Errorf("Mask(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestMaskWidthInsideEscapes(t *testing.T) {
	m := matcher(t, secrets...)
	in := "[" + awsKey[:10] + "\x1b[7m" + awsKey[10:] + "\x1b[27m]"
	want := "[" + strings.Repeat("*", 10) + "\x1b[7m" + strings.Repeat("*", 10) + "\x1b[27m]"
	if got := string(m.Mask([]byte(in), "")); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// Digits in a control sequence are not text: a pattern of digits must not
// rewrite a colour or a cursor position.
func TestMaskLeavesEscapeParameters(t *testing.T) {
	m := matcher(t, `[0-9]{4,}`)
	in := "\x1b[38;2;1234;5678;9999m\x1b[1000;1000H 12345"
	want := "\x1b[38;2;1234;5678;9999m\x1b[1000;1000H " + Marker
	if got := string(m.Mask([]byte(in), Marker)); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// recorder keeps each Write the Writer makes.
type recorder struct {
	mu     sync.Mutex
	writes []string
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes = append(r.writes, string(p))
	return len(p), nil
}

func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.writes, "")
}

// Every way of splitting a line into two or three writes masks it the same.
func TestWriterSplit(t *testing.T) {
	m := matcher(t, secrets...)
	in := "a " + skKey + " b \x1b[32m" + awsKey[:7] + "\x1b[0m" + awsKey[7:] + " é " + ghKey + "\n"
	want := string(m.Mask([]byte(in), Marker))
	if strings.Contains(want, "abcdefgh") || strings.Count(want, Marker) != 3 {
		t.Fatalf("whole-line mask is wrong: %q", want)
	}
	for i := 0; i <= len(in); i++ {
		for j := i; j <= len(in); j += 7 {
			var r recorder
			w := NewWriter(&r, m, Options{Replacement: Marker, Delay: -1})
			for _, part := range []string{in[:i], in[i:j], in[j:]} {
				if _, err := w.Write([]byte(part)); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if got := r.String(); got != want {
				t.Fatalf("split at %d,%d: got %q, want %q", i, j, got, want)
			}
		}
	}
}

// Text that cannot begin a secret is written at once: a prompt must not
// wait for a timer.
func TestWriterPrompt(t *testing.T) {
	m := matcher(t, secrets...)
	for _, tc := range []struct{ in, now string }{
		{"Password: ", "Password: "},
		{"ask-me> ", "ask-me> "},
		{"$ ", "$ "},
		{"key: sk-abc", "key: "},                     // may be the start of a key
		{"id AKIA12", "id "},                         //
		{"x AKIA12 ", "x AKIA12 "},                   // the space rules it out
		{"caf\xc3", "caf"},                           // half a rune waits for the rest
		{"\x1b[1mbold\x1b[0m", "\x1b[1mbold\x1b[0m"}, // escapes are no reason to wait
	} {
		var r recorder
		w := NewWriter(&r, m, Options{Replacement: Marker, Delay: -1})
		w.Write([]byte(tc.in))
		if got := r.String(); got != tc.now {
			t.Errorf("after writing %q: %q went out, want %q", tc.in, got, tc.now)
		}
		w.Flush()
		if got := r.String(); got != tc.in {
			t.Errorf("after Flush of %q: %q went out", tc.in, got)
		}
	}
}

// Held text goes out after Delay even when nothing more comes.
func TestWriterDelay(t *testing.T) {
	m := matcher(t, secrets...)
	var r recorder
	w := NewWriter(&r, m, Options{Replacement: Marker, Delay: 20 * time.Millisecond})
	defer w.Close()
	start := time.Now()
	w.Write([]byte("prompt sk-"))
	if got := r.String(); got != "prompt " {
		t.Fatalf("wrote %q at once", got)
	}
	for r.String() != "prompt sk-" {
		if time.Since(start) > 2*time.Second {
			t.Fatalf("held text not written after 2s: %q", r.String())
		}
		time.Sleep(2 * time.Millisecond)
	}
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Errorf("held text written after %v, before the delay", d)
	}
	// The writer goes on working after a timed flush.
	w.Write([]byte(" " + awsKey + "\n"))
	if got := r.String(); got != "prompt sk- "+Marker+"\n" {
		t.Errorf("got %q", got)
	}
}

// A secret longer than MaxLen split over writes may leak in part, as
// documented; within MaxLen it may not.
func TestWriterMaxLen(t *testing.T) {
	m := matcher(t, `sk-[a-z]{20,}`)
	long := "sk-" + strings.Repeat("a", 100)
	for _, maxLen := range []int{len(long) + 1, 50} {
		var r recorder
		w := NewWriter(&r, m, Options{Replacement: Marker, MaxLen: maxLen, Delay: -1})
		for i := 0; i < len(long); i += 10 {
			w.Write([]byte(long[i:min(i+10, len(long))]))
		}
		w.Write([]byte(".\n"))
		w.Close()
		got := r.String()
		if maxLen > len(long) && got != Marker+".\n" {
			t.Errorf("MaxLen %d: got %q", maxLen, got)
		}
		if maxLen < len(long) && strings.Contains(got, long) {
			t.Errorf("MaxLen %d: not masked at all: %q", maxLen, got)
		}
	}
}

func TestCompile(t *testing.T) {
	if m, err := Compile(nil); m != nil || err != nil {
		t.Errorf("Compile(nil) = %v, %v", m, err)
	}
	if _, err := Compile([]*regexp.Regexp{regexp.MustCompile(`a*`)}); err == nil {
		t.Error("an expression matching the empty string was accepted")
	}
	// Flags stay inside their own expression.
	m := matcher(t, `(?i)token-[0-9]{4}`, `abc`)
	if got := string(m.Mask([]byte("TOKEN-1234 ABC abc"), "#")); got != "# ABC #" {
		t.Errorf("got %q", got)
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	f.n++
	return 0, io.ErrClosedPipe
}

func TestWriterErrors(t *testing.T) {
	m := matcher(t, secrets...)
	f := &failWriter{}
	w := NewWriter(f, m, Options{Delay: -1})
	if _, err := w.Write([]byte("hello\n")); err != io.ErrClosedPipe {
		t.Fatalf("first write: %v", err)
	}
	if _, err := w.Write([]byte("again\n")); err != io.ErrClosedPipe || f.n != 1 {
		t.Fatalf("second write: %v after %d writes", err, f.n)
	}
	var r recorder
	w = NewWriter(&r, m, Options{Delay: -1})
	w.Close()
	if _, err := w.Write([]byte("x")); err != ErrClosed {
		t.Errorf("write after close: %v", err)
	}
}

// Concurrent writers and the timer: run with -race.
func TestWriterConcurrent(t *testing.T) {
	m := matcher(t, secrets...)
	var r recorder
	w := NewWriter(&r, m, Options{Replacement: Marker, Delay: time.Millisecond})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				fmt.Fprintf(w, "%d:%d %s\n", g, i, awsKey)
				time.Sleep(100 * time.Microsecond)
			}
		}()
	}
	wg.Wait()
	w.Close()
	if got := r.String(); strings.Contains(got, awsKey) || strings.Count(got, Marker) != 200 {
		t.Errorf("%d markers, key present: %v", strings.Count(got, Marker), strings.Contains(got, awsKey))
	}
}

// textOf is what a terminal would show of b: b without escape sequences.
func textOf(b []byte) []byte {
	var sc scanner
	var out []byte
	for _, c := range b {
		if sc.next(c) {
			out = append(out, c)
		}
	}
	return out
}

// FuzzWriter writes input in chunks of the sizes the fuzzer picks (up to
// MaxLen) and checks that no secret shows in the output, that the chunking
// changes nothing, and that input without secrets passes unchanged.
func FuzzWriter(f *testing.F) {
	f.Add([]byte("token="+skKey+"\n"), []byte{3, 7, 1})
	f.Add([]byte("\x1b[31m"+awsKey[:5]+"\x1b[0m"+awsKey[5:]), []byte{1})
	f.Add([]byte("\x1b]0;"+ghKey+"\x07 é"), []byte{2, 200})
	f.Add([]byte("sk-sk-"+skKey[3:]+"AKIA"+awsKey), []byte{5})
	exprs := []string{`sk-[A-Za-z0-9]{20,40}`, `AKIA[0-9A-Z]{16}`, `ghp_[A-Za-z0-9]{36}`, `[0-9]{12}`}
	m := matcher(f, exprs...)
	var res []*regexp.Regexp
	for _, e := range exprs {
		res = append(res, regexp.MustCompile(e))
	}
	const maxLen = 128
	f.Fuzz(func(t *testing.T, in []byte, chunks []byte) {
		for _, repl := range []string{"#", ""} {
			var out bytes.Buffer
			w := NewWriter(&out, m, Options{Replacement: repl, MaxLen: maxLen, Delay: -1})
			rest := in
			for i := 0; len(rest) > 0; i++ {
				n := len(rest)
				if len(chunks) > 0 {
					n = min(n, 1+int(chunks[i%len(chunks)])%maxLen)
				}
				w.Write(rest[:n])
				rest = rest[n:]
			}
			w.Close()
			got := out.Bytes()
			text := textOf(got)
			for _, re := range res {
				if loc := re.FindIndex(text); loc != nil {
					t.Fatalf("%q shows %q in %q (from %q)", re, text[loc[0]:loc[1]], got, in)
				}
			}
			if whole := m.Mask(in, repl); !bytes.Equal(got, whole) {
				t.Fatalf("chunks %v: %q, in one piece %q", chunks, got, whole)
			}
			var l [][2]int
			for _, loc := range m.re.FindAllIndex(in, -1) {
				l = append(l, [2]int{loc[0], loc[1]})
			}
			if fa := m.findAll(newLive(m.prog), in, nil); !slices.Equal(fa, l) {
				t.Fatalf("findAll(%q) = %v, regexp says %v", in, fa, l)
			}
			if m.re.Find(textOf(in)) == nil && !bytes.Equal(got, in) {
				t.Fatalf("nothing to mask, yet %q became %q", in, got)
			}
		}
	})
}
