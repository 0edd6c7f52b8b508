package mask

// escState is where an ANSI/ECMA-48 parser stands before a byte. Masking
// never changes the bytes that make up an escape sequence (a rewritten
// SGR or cursor movement would corrupt the terminal), and never lets a
// sequence hide or split a secret: the expressions are matched against the
// text with the sequences taken out. The payloads of string sequences
// (OSC, DCS, APC, PM, SOS: window titles, hyperlink targets, clipboard
// writes) are text a user may see, so they are matched and masked like
// the rest; only their introducers and terminators are kept apart.
type escState uint8

const (
	ground   escState = iota
	escape            // after ESC
	escInter          // ESC and intermediate bytes (0x20-0x2f)
	csi               // ESC [ and parameters, until a final byte
	str               // the payload of OSC, DCS, APC, PM or SOS
	strEsc            // ESC inside a string: ST (ESC \) or a new sequence
)

// maxCSI bounds a control sequence: no terminal sends longer ones, and a
// stray "ESC [" must not hide the digits that follow it from matching.
const maxCSI = 64

// scanner classifies bytes as text (matched) or escape structure (kept).
type scanner struct {
	state escState
	n     int // bytes in the current control sequence
}

// next consumes b and reports whether b is text.
func (s *scanner) next(b byte) bool {
	switch s.state {
	case ground:
		if b == 0x1b {
			s.state = escape
			return false
		}
		return true
	case escape:
		s.n = 0
		switch {
		case b == '[':
			s.state = csi
		case b == ']' || b == 'P' || b == 'X' || b == '^' || b == '_':
			s.state = str
		case b >= 0x20 && b <= 0x2f:
			s.state = escInter
		case b == 0x1b:
			s.state = escape
		default: // a final byte, or CAN/SUB cancelling the sequence
			s.state = ground
		}
		return false
	case escInter:
		switch {
		case b >= 0x20 && b <= 0x2f:
		case b == 0x1b:
			s.state = escape
		default:
			s.state = ground
		}
		return false
	case csi:
		s.n++
		switch {
		case b == 0x1b:
			s.state = escape
		case b >= 0x40 && b <= 0x7e, b == 0x18, b == 0x1a:
			s.state = ground
		case s.n > maxCSI:
			s.state = ground
			return true
		}
		return false
	case str:
		switch b {
		case 0x07, 0x18, 0x1a: // BEL ends an OSC; CAN and SUB cancel
			s.state = ground
			return false
		case 0x1b:
			s.state = strEsc
			return false
		}
		return true
	case strEsc:
		if b == '\\' {
			s.state = ground
			return false
		}
		// Any other ESC ends the string and starts a new sequence.
		s.state = escape
		return s.next(b)
	}
	return true
}
