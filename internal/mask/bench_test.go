package mask

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// benchInput is terminal-like output: coloured lines of code and prose,
// with a key every 64 lines.
func benchInput() []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < 1<<20; i++ {
		b.WriteString("\x1b[32m+\x1b[0m func handle(w http.ResponseWriter, r *http.Request) { // ask-me later é\n")
		if i%64 == 0 {
			b.WriteString("export OPENAI_API_KEY=" + skKey + "\n")
		}
	}
	return b.Bytes()
}

// BenchmarkCopy is the baseline: io.Copy in 4 KiB reads, as from a pty.
func BenchmarkCopy(b *testing.B) {
	in := benchInput()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		io.CopyBuffer(io.Discard, struct{ io.Reader }{bytes.NewReader(in)}, make([]byte, 4096))
	}
}

func BenchmarkWriter(b *testing.B) {
	m := matcher(b, secrets...)
	in := benchInput()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		w := NewWriter(io.Discard, m, Options{Replacement: Marker, Delay: -1})
		io.CopyBuffer(w, struct{ io.Reader }{bytes.NewReader(in)}, make([]byte, 4096))
		w.Close()
	}
}

// BenchmarkWriterNoPrefix has an expression without a literal prefix, which
// keeps more text open at the end of every write.
func BenchmarkWriterNoPrefix(b *testing.B) {
	m := matcher(b, append(secrets, `[A-Za-z0-9]{40}`)...)
	in := benchInput()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		w := NewWriter(io.Discard, m, Options{Replacement: Marker, Delay: -1})
		io.CopyBuffer(w, struct{ io.Reader }{bytes.NewReader(in)}, make([]byte, 4096))
		w.Close()
	}
}

// BenchmarkWriterKeystrokes is an interactive session: one byte per write.
func BenchmarkWriterKeystrokes(b *testing.B) {
	m := matcher(b, secrets...)
	in := []byte(strings.Repeat("ls -la ~/projects/aigate sk-notakey\r\n", 100))
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		w := NewWriter(io.Discard, m, Options{Replacement: Marker, Delay: -1})
		for i := range in {
			w.Write(in[i : i+1])
		}
		w.Close()
	}
}
