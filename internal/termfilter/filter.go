package termfilter

import (
	"io"
	"sync"
)

// Kind is a kind of sequence the filter drops.
type Kind uint8

const (
	// Clipboard: OSC 52 (set or read the system clipboard) and kitty's
	// OSC 5522. A write makes the user's next paste, into a shell
	// outside, the sandbox's text; a read hands the command what the
	// user copied elsewhere.
	Clipboard Kind = iota
	// TitleReport: CSI 20 t and CSI 21 t make the terminal type back the
	// icon label or window title, which the command set (OSC 0/1/2).
	TitleReport
	// SettingsReport: DECRQSS (DCS $ q). Terminals have answered it with
	// the request's own text (xterm's CVE-2008-2383).
	SettingsReport
	// Font: OSC 50 sets and reports the font by a name the command
	// chose (xterm's CVE-2022-45063).
	Font
	// Terminal program commands that reach past the screen: iTerm2's
	// OSC 1337 (file downloads and upload requests, CopyToClipboard,
	// user variables it reports back), kitty's OSC 5113 file transfer,
	// xterm's OSC 46 log file.
	TerminalCommand
	// DCS: device control strings other than sixel graphics, XTGETTCAP
	// and the synchronized-update form: tmux's and screen's passthrough
	// (which would carry any of the above past the multiplexer),
	// DECUDK (program function keys to type text), DECRSPS.
	DCS
	// Charset: ESC % other than ESC % G leaves UTF-8, after which the
	// terminal would read bytes of UTF-8 text as 8-bit controls that
	// the filter passed as text.
	Charset
	// Unrecognised: an OSC whose number is missing, not a number or
	// overlong, or a sequence longer than any terminal uses: the filter
	// cannot tell what a terminal would make of it.
	Unrecognised
	nKinds
)

var kindNames = [nKinds]string{
	Clipboard:       "a clipboard write or read (OSC 52)",
	TitleReport:     "a request to report the window title (CSI 20/21 t)",
	SettingsReport:  "a request to report terminal settings (DECRQSS)",
	Font:            "a font change or report (OSC 50)",
	TerminalCommand: "a terminal program command (OSC 1337, 5113 or 46: files, clipboard, log)",
	DCS:             "a device control string (tmux passthrough, user-defined keys)",
	Charset:         "a switch out of UTF-8 (ESC %)",
	Unrecognised:    "an escape sequence it could not parse",
}

func (k Kind) String() string {
	if k < nKinds {
		return kindNames[k]
	}
	return "an escape sequence"
}

// Limits of what the filter holds before it decides. No terminal program
// sends longer control sequences; a longer one is dropped whole.
const (
	maxSeq    = 64 // a CSI, a DCS up to its final byte, an ESC sequence
	maxOSCNum = 6  // digits of an OSC number
)

type state uint8

const (
	ground   state = iota
	sawC2          // a 0xC2 that may begin a UTF-8 encoded C1 control
	escape         // after ESC (or an 8-bit introducer: see held)
	escInter       // ESC and intermediate bytes
	csiSeq         // CSI and its parameters, until a final byte
	oscHead        // OSC and its number, until ';' or the end
	oscEsc         // an OSC with no payload and an ESC: ST or not
	dcsHead        // DCS and its parameters, until a final byte
	skipCSI        // an overlong CSI, dropped until its final byte
	skipStr        // a string dropped until its terminator
)

// Filter is an io.Writer that passes what it is given to the writer
// below, without the sequences Kind lists. A sequence split over writes
// is held until its kind is known; a string whose kind is known streams
// (a long OSC 8 link or title is not held). Safe for concurrent use.
type Filter struct {
	mu     sync.Mutex
	w      io.Writer
	onDrop func(Kind)

	st     state
	cont   int    // UTF-8 continuation bytes still expected in ground
	held   []byte // the sequence being decided
	fromC1 bool   // held starts with an 8-bit introducer, not ESC
	bel    bool   // skipStr: BEL ends the string (an OSC)
	skipST bool   // escape entered from skipStr: its ESC \ is dropped
	out    []byte
	err    error
}

// New returns a Filter writing to w. onDrop (which may be nil) is called,
// with the filter's lock held, for every sequence dropped.
func New(w io.Writer, onDrop func(Kind)) *Filter {
	return &Filter{w: w, onDrop: onDrop, held: make([]byte, 0, maxSeq+8)}
}

// Write filters p. It reports all of p as written unless the writer
// below failed.
func (f *Filter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return 0, f.err
	}
	f.out = f.out[:0]
	for i := 0; i < len(p); i++ {
		if f.st == ground {
			// Fast path: text (ASCII and well-formed UTF-8) up to the
			// next byte that matters, copied at once.
			j := i
			for ; j < len(p); j++ {
				c := p[j]
				if c < 0x80 {
					if c == 0x1b {
						break
					}
					f.cont = 0
				} else if c < 0xc0 && f.cont > 0 {
					f.cont--
				} else if c >= 0xc3 && c <= 0xf4 && f.cont == 0 {
					f.cont = utf8Len(c)
				} else {
					break
				}
			}
			f.out = append(f.out, p[i:j]...)
			i = j
			if i == len(p) {
				break
			}
		}
		f.step(p[i])
	}
	if len(f.out) > 0 {
		if _, err := f.w.Write(f.out); err != nil {
			f.err = err
			return 0, err
		}
	}
	return len(p), nil
}

// Close drops a sequence left unfinished (it never ended: the terminal
// would wait for its end, and what it is cannot be known).
func (f *Filter) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.st == sawC2 && f.err == nil {
		// A lone UTF-8 lead byte is text.
		if _, err := f.w.Write(f.held); err != nil {
			f.err = err
		}
	}
	f.held = f.held[:0]
	f.st, f.cont = ground, 0
	return f.err
}

func (f *Filter) drop(k Kind) {
	f.held = f.held[:0]
	if f.onDrop != nil {
		f.onDrop(k)
	}
}

// pass writes what is held and returns to ground.
func (f *Filter) pass() {
	f.out = append(f.out, f.held...)
	f.held = f.held[:0]
	f.st = ground
}

// c1 maps an 8-bit control to the ESC sequence it stands for ('[' for
// CSI, ...), 0 for the controls that introduce nothing.
func c1(b byte) byte {
	switch b {
	case 0x9b:
		return '['
	case 0x9d:
		return ']'
	case 0x90:
		return 'P'
	case 0x98:
		return 'X'
	case 0x9e:
		return '^'
	case 0x9f:
		return '_'
	}
	return 0
}

func (f *Filter) step(b byte) {
	switch f.st {
	case ground:
		f.ground(b)
	case sawC2:
		f.st = ground
		if c1(b) != 0 || b == 0x9c {
			// U+0080..U+009F: the terminal may take it for the 8-bit
			// control (xterm does).
			f.held = append(f.held, b)
			f.introduce(c1(b), true)
			return
		}
		f.pass() // the 0xC2, a UTF-8 lead byte
		f.cont = 1
		f.ground(b)
	case escape:
		f.escape(b)
	case escInter:
		f.escInter(b)
	case csiSeq:
		f.csi(b)
	case oscHead:
		f.oscHead(b)
	case dcsHead:
		f.dcsHead(b)
	case oscEsc:
		if b == '\\' {
			f.held = append(f.held, b)
			f.pass()
			return
		}
		// An ESC that is not ST ends the OSC in the terminal, but if
		// what follows were dropped, the number's digits would run on
		// into what passes after ("ESC ]0" + "52;c;..."): the OSC is
		// dropped (it set nothing: it had no payload).
		f.held = append(f.held[:0], 0x1b)
		f.fromC1 = false
		f.st = escape
		f.escape(b)
	case skipCSI:
		if b >= 0x40 && b <= 0x7e {
			f.st = ground
		} else if b == 0x18 || b == 0x1a {
			f.out = append(f.out, b)
			f.st = ground
		} else if b == 0x1b {
			f.st = escape
			f.held = append(f.held[:0], b)
			f.fromC1 = false
		}
	case skipStr:
		f.skipStr(b)
	}
}

// ground handles a byte of text or the start of a sequence. cont tracks
// UTF-8, so that a continuation byte of a character (0x9d in U+275D) is
// not taken for an 8-bit control.
func (f *Filter) ground(b byte) {
	switch {
	case b == 0x1b:
		f.cont = 0
		f.held = append(f.held[:0], b)
		f.fromC1 = false
		f.st = escape
	case b < 0x80:
		f.cont = 0
		f.out = append(f.out, b)
	case b < 0xc0:
		if f.cont > 0 {
			f.cont--
			f.out = append(f.out, b)
			return
		}
		// A stray byte, which a terminal not decoding UTF-8 takes for
		// an 8-bit control.
		if c1(b) != 0 {
			f.held = append(f.held[:0], b)
			f.introduce(c1(b), true)
			return
		}
		if b == 0x9c { // a lone ST ends nothing
			f.out = append(f.out, b)
			return
		}
		f.out = append(f.out, b)
	case b == 0xc2:
		f.cont = 0
		f.held = append(f.held[:0], b)
		f.st = sawC2
	default:
		f.cont = 0
		switch {
		case b >= 0xc3 && b <= 0xdf:
			f.cont = 1
		case b >= 0xe0 && b <= 0xef:
			f.cont = 2
		case b >= 0xf0 && b <= 0xf4:
			f.cont = 3
		}
		f.out = append(f.out, b)
	}
}

// utf8Len is the number of continuation bytes after lead byte c
// (0xc3..0xf4).
func utf8Len(c byte) int {
	switch {
	case c <= 0xdf:
		return 1
	case c <= 0xef:
		return 2
	}
	return 3
}

// introduce moves on from an introducer held: ESC then intro, or an
// 8-bit control standing for it (intro 0: one that starts nothing).
func (f *Filter) introduce(intro byte, eightBit bool) {
	f.fromC1 = eightBit
	switch intro {
	case '[':
		f.st = csiSeq
	case ']':
		f.st = oscHead
	case 'P':
		f.st = dcsHead
	default:
		// APC (kitty graphics), PM, SOS, an 8-bit ST, or an ESC
		// sequence's final byte: passed. Their payloads are judged as
		// text is: an ESC in them starts a sequence of its own here as
		// in the terminal.
		f.pass()
	}
}

func (f *Filter) escape(b byte) {
	skipST := f.skipST
	f.skipST = false
	switch {
	case b == '\\' && skipST:
		// The ST of a string dropped.
		f.held = f.held[:0]
		f.st = ground
	case b == 0x1b && skipST:
		// An escaped ESC in a dropped string (tmux's passthrough
		// doubles the ESCs it carries): dropping on to the ST drops no
		// less than the terminal would have shown.
		f.held = f.held[:0]
		f.st = skipStr
	case b == '[' || b == ']' || b == 'P':
		f.held = append(f.held, b)
		f.introduce(b, false)
	case b >= 0x20 && b <= 0x2f:
		f.held = append(f.held, b)
		f.st = escInter
	case b >= 0x30 && b <= 0x7e:
		f.held = append(f.held, b)
		f.pass()
	case b == 0x1b:
		// The terminal abandons the first ESC; the filter drops it. A
		// lone ESC passed would join whatever passes next: with a
		// sequence dropped in between, "ESC" + "]52;c;..." would be
		// the clipboard write the filter dropped the sequence before.
		f.held = f.held[:0]
		f.ground(b)
	case b == 0x18 || b == 0x1a:
		f.held = append(f.held, b)
		f.pass()
	case b < 0x20 || b == 0x7f:
		// Executed or ignored by the terminal inside the sequence.
		f.held = append(f.held, b)
		f.tooLong()
	default:
		// Not a sequence: the ESC is dropped (never passed alone, see
		// above), the byte judged.
		f.held = f.held[:0]
		f.st = ground
		f.ground(b)
	}
}

func (f *Filter) escInter(b byte) {
	switch {
	case b >= 0x20 && b <= 0x2f:
		f.held = append(f.held, b)
		f.tooLong()
	case b >= 0x30 && b <= 0x7e:
		f.held = append(f.held, b)
		if f.held[1] == '%' && !(len(f.held) == 3 && b == 'G') {
			f.drop(Charset)
			f.st = ground
			return
		}
		f.pass()
	case b == 0x1b:
		// Cancelled, as in the terminal.
		f.held = f.held[:0]
		f.ground(b)
	case b == 0x18 || b == 0x1a:
		f.held = append(f.held, b)
		f.pass()
	case b < 0x20 || b == 0x7f:
		f.held = append(f.held, b)
		f.tooLong()
	default:
		// Unfinished: dropped, so that nothing can finish it later.
		f.held = f.held[:0]
		f.st = ground
		f.ground(b)
	}
}

// tooLong drops a sequence past maxSeq and skips the rest of it.
func (f *Filter) tooLong() {
	if len(f.held) <= maxSeq {
		return
	}
	st := f.st
	f.drop(Unrecognised)
	f.st = ground
	switch st {
	case csiSeq, dcsHead:
		// DCS too: its string then ends at its ST.
		if st == dcsHead {
			f.st, f.bel = skipStr, false
		} else {
			f.st = skipCSI
		}
	}
}

func (f *Filter) csi(b byte) {
	switch {
	case b >= 0x40 && b <= 0x7e:
		f.held = append(f.held, b)
		if b == 't' && titleReport(f.params()) {
			f.drop(TitleReport)
			f.st = ground
			return
		}
		f.pass()
	case b == 0x1b:
		// The terminal cancels the unfinished CSI: nothing of it shows.
		f.held = f.held[:0]
		f.ground(b)
	case b == 0x18 || b == 0x1a:
		f.held = append(f.held[:0], b)
		f.pass()
	case b >= 0x80:
		f.held = f.held[:0]
		f.st = ground
		f.ground(b)
	default: // parameters, intermediates, C0 controls, DEL
		f.held = append(f.held, b)
		f.tooLong()
	}
}

// params is what follows the introducer of the held sequence.
func (f *Filter) params() []byte {
	if f.fromC1 {
		if f.held[0] == 0xc2 {
			return f.held[2:]
		}
		return f.held[1:]
	}
	return f.held[2:]
}

// titleReport reports whether CSI params t (params without the final
// byte) asks for the icon label (20) or the window title (21).
func titleReport(params []byte) bool {
	params = params[:len(params)-1]
	n, ok := 0, false
	for _, c := range params {
		switch {
		case c >= '0' && c <= '9':
			if n < 1000 {
				n = n*10 + int(c-'0')
			}
			ok = true
		case c == ';' || c == ':':
			return ok && (n == 20 || n == 21)
		case c < 0x20 || c == 0x7f:
			// C0 controls inside are executed, not parameters; DEL
			// is ignored ("CSI 2 DEL 1 t" is CSI 21 t).
		default:
			// A private marker or intermediate: another function.
			return false
		}
	}
	return ok && (n == 20 || n == 21)
}

func (f *Filter) oscHead(b byte) {
	num := f.params()
	switch {
	case b >= '0' && b <= '9':
		f.held = append(f.held, b)
		if len(num)+1 > maxOSCNum {
			f.drop(Unrecognised)
			f.st, f.bel = skipStr, true
		}
	case b == ';':
		f.held = append(f.held, b)
		f.decideOSC(num)
	case b == 0x07 || b == 0x1b || b == 0x9c:
		// Ended with no payload ("OSC 104 BEL" resets the palette).
		// 0x9c may be the second byte of U+009C: judged with the rest.
		if k, bad := oscKind(num); bad {
			f.drop(k)
			f.st = ground
			if b == 0x1b {
				f.held = append(f.held, b)
				f.fromC1 = false
				f.st, f.skipST = escape, true
			}
			return
		}
		f.held = append(f.held, b)
		if b == 0x1b {
			// Held until the next byte says whether it is ST.
			f.st = oscEsc
			return
		}
		f.pass()
	case b == 0x18 || b == 0x1a:
		// Cancelled: the head is dropped, so that no terminal that
		// would not cancel it reads what passes next as its digits.
		if k, bad := oscKind(num); bad && len(num) > 0 {
			f.drop(k)
		}
		f.held = append(f.held[:0], b)
		f.pass()
	default:
		// A letter or other byte where the number goes: what a
		// terminal makes of it differs.
		f.drop(Unrecognised)
		f.st, f.bel = skipStr, true
		f.skipStr(b)
	}
}

// decideOSC passes an OSC whose number is known, then streams its
// payload as text, or drops it with its payload.
func (f *Filter) decideOSC(num []byte) {
	if k, bad := oscKind(num); bad {
		f.drop(k)
		f.st, f.bel = skipStr, true
		return
	}
	f.pass()
}

// oscKind says whether OSC num is dropped, and as what.
func oscKind(num []byte) (Kind, bool) {
	if len(num) == 0 {
		return Unrecognised, true
	}
	n := 0
	for _, c := range num {
		n = n*10 + int(c-'0')
	}
	switch n {
	case 52, 5522:
		return Clipboard, true
	case 50:
		return Font, true
	case 1337, 5113, 46:
		return TerminalCommand, true
	}
	return 0, false
}

func (f *Filter) dcsHead(b byte) {
	switch {
	case b >= 0x40 && b <= 0x7e:
		f.held = append(f.held, b)
		if k, bad := dcsKind(f.params()); bad {
			f.drop(k)
			f.st, f.bel = skipStr, false
			return
		}
		f.pass()
	case b == 0x1b:
		f.held = f.held[:0]
		f.ground(b)
	case b == 0x18 || b == 0x1a:
		f.held = append(f.held[:0], b)
		f.pass()
	case b >= 0x80:
		// Not a DCS a terminal would finish: drop it and its string.
		f.drop(DCS)
		f.st, f.bel = skipStr, false
		f.skipStr(b)
	default:
		f.held = append(f.held, b)
		f.tooLong()
	}
}

// dcsKind says whether the DCS with these parameters, intermediates and
// final byte is dropped. Passed: sixel graphics (final q), XTGETTCAP
// (+q, answered in hex), the synchronized-update form (=1s, =2s).
func dcsKind(head []byte) (Kind, bool) {
	final := head[len(head)-1]
	var inter, private []byte
	for _, c := range head[:len(head)-1] {
		switch {
		case c >= 0x20 && c <= 0x2f:
			inter = append(inter, c)
		case c >= 0x30 && c <= 0x3f && len(inter) > 0:
			// A parameter after an intermediate: a malformed DCS,
			// which terminals ignore.
			return DCS, true
		case c >= '<' && c <= '?':
			private = append(private, c)
		}
	}
	switch {
	case final == 'q' && len(inter) == 0 && len(private) == 0:
		return 0, false
	case final == 'q' && string(inter) == "+" && len(private) == 0:
		return 0, false
	case final == 's' && string(private) == "=" && len(inter) == 0:
		return 0, false
	case final == 'q' && string(inter) == "$":
		return SettingsReport, true
	}
	return DCS, true
}

// skipStr drops a string's payload until its end: BEL (OSC), ST (ESC \
// or 8-bit), CAN, SUB, or an ESC that starts the next sequence.
func (f *Filter) skipStr(b byte) {
	switch {
	case b == 0x07 && f.bel:
		f.st = ground
	case b == 0x18 || b == 0x1a:
		// Passed, as every cancelled sequence's CAN is.
		f.out = append(f.out, b)
		f.st = ground
	case b == 0x1b:
		f.held = append(f.held[:0], b)
		f.fromC1 = false
		f.st, f.skipST = escape, true
	case b == 0x9c:
		// ST (8-bit, or the end of U+009C): the string ends here in a
		// terminal that reads either.
		f.st = ground
	}
}
