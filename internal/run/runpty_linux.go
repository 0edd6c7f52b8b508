package run

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/aigate-dev/aigate/internal/cmdutil"
	"github.com/aigate-dev/aigate/internal/mask"
)

// ptyTerm runs the command on a pseudo-terminal, so that what it writes
// can be filtered (and masked) while it still sees a terminal (raw mode,
// colours, size). When stdin is a terminal too, the real terminal is put
// in raw mode and every byte typed goes to the pty, whose own line
// discipline turns Ctrl-C, Ctrl-\ and Ctrl-Z into signals for the
// command; what the command writes comes back through the filter.
type ptyTerm struct {
	f      *cmdutil.Factory
	master *os.File
	in     *os.File // the real terminal (stdin); nil when stdin is not one
	out    *os.File // the real terminal (stdout), whose size the pty copies
	lines  *lineWriter

	mu    sync.Mutex
	saved *term.State // the real terminal's mode, nil when not raw
	// savedOut is the real terminal's mode when only output passes
	// through the pty (stdin not a terminal): OPOST is turned off, as
	// the pty's own line discipline turns "\n" into "\r\n" already.
	savedOut *unix.Termios
	active   bool         // activate ran
	pid      atomic.Int64 // the command, once started (suspend)
	// noStop: aigate must not stop (it embeds the fanotify agent, which
	// answers the kernel for every open in the marked places: stopped, it
	// would make them wait, the user's shell's too). Ctrl-Z then stops
	// nothing, and a stop of the command is undone, with a line saying why.
	noStop   atomic.Bool
	stopNote sync.Once
	winch    chan os.Signal
	done     chan struct{}
}

// openPTY gives the command a pty for stdout (and stdin and stderr when
// they are terminals) and starts copying its output; the real terminal
// is not touched until activate.
func openPTY(f *cmdutil.Factory, m *mask.Matcher, s *runStdio, filter bool) (*ptyTerm, error) {
	master, slave, err := pty.Open()
	if err != nil {
		return nil, errors.New("command terminal: open a pseudo-terminal (through which the command's output is filtered; --raw-terminal gives it your terminal unfiltered instead): " + err.Error())
	}
	t := &ptyTerm{f: f, master: master, out: f.Out.(*os.File), lines: s.lines,
		winch: make(chan os.Signal, 1), done: make(chan struct{})}
	_ = pty.InheritSize(t.out, master)
	s.Stdout, s.Ctty, s.CttyFD = slave, true, 1
	if isTerminal(f.In) {
		t.in = f.In.(*os.File)
		s.Stdin, s.CttyFD = slave, 0
	}
	s.childEnds = append(s.childEnds, slave)
	// Full-screen programs count columns: keep the width of a secret.
	s.copy(master, s.output(f.Out, m, filter, ""))
	return t, nil
}

// activate takes the real terminal: raw mode and what is typed when
// stdin is a terminal, the window size always. On failure the command
// must not start (the terminal would not reach it).
func (t *ptyTerm) activate() error {
	if err := t.makeRaw(); err != nil {
		return errors.New("command terminal: put the terminal in raw mode: " + err.Error())
	}
	t.mu.Lock()
	t.active = true
	t.mu.Unlock()
	signal.Notify(t.winch, syscall.SIGWINCH)
	go func() {
		for {
			select {
			case <-t.winch:
				_ = pty.InheritSize(t.out, t.master)
			case <-t.done:
				return
			}
		}
	}()
	if t.in != nil {
		// What is typed goes to the command. This read of the terminal
		// cannot be interrupted; it ends with aigate.
		go func() { _, _ = copyInput(t.master, t.in, t.suspend) }()
	}
	return nil
}

// input reports whether what is typed reaches the command through the
// pty (so Ctrl-C does); otherwise the real terminal signals aigate, which
// passes SIGINT and SIGQUIT on.
func (t *ptyTerm) input() bool { return t.in != nil }

// copyInput copies what is typed to the pty; after a chunk holding a
// control character that may be the pty's VSUSP (Ctrl-Z) it calls
// suspend in the background (nil: never), which checks.
func copyInput(dst, src *os.File, suspend func(byte)) (int64, error) {
	buf := make([]byte, 4096)
	var n int64
	for {
		k, err := src.Read(buf)
		if k > 0 {
			if _, werr := dst.Write(buf[:k]); werr != nil {
				return n, werr
			}
			n += int64(k)
			for _, c := range buf[:k] {
				if suspend != nil && c < 0x20 && c != '\r' && c != '\n' && c != '\t' && c != 0x1b {
					go suspend(c)
					break
				}
			}
		}
		if err != nil {
			return n, err
		}
	}
}

func (t *ptyTerm) makeRaw() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	select {
	case <-t.done: // restored for good
		return nil
	default:
	}
	if t.in == nil {
		return t.rawOutput()
	}
	st, err := term.MakeRaw(int(t.in.Fd()))
	if err != nil {
		return err
	}
	t.saved = st
	t.lines.raw.Store(true)
	return nil
}

// suspend makes Ctrl-Z (c, the pty's VSUSP) stop the command, which the
// kernel no longer does: the command's process group is orphaned (its
// parent, aigate, is in another session), so the SIGTSTP that the pty's
// line discipline sends for Ctrl-Z, or that a full-screen program sends
// itself after giving the terminal back (Claude Code: "Claude Code is
// suspended. Run `fg` to bring it back."), is discarded and the program
// runs on with nobody reading the terminal. aigate sends SIGSTOP instead,
// which started's watcher then handles as a stop (terminal back, the job
// stopped in the shell; fg continues the command, which redraws). Only
// when the command's own group holds the pty (a job-control shell inside
// stops its jobs itself), and for a full-screen program only once it put
// the pty back to line mode (ICANON) within a second: Ctrl-Z as a key of
// its own (undo in an editor) leaves it alone.
func (t *ptyTerm) suspend(c byte) {
	pid := int(t.pid.Load())
	if pid <= 0 {
		return
	}
	fd := int(t.master.Fd())
	tio, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil || c != tio.Cc[unix.VSUSP] {
		return
	}
	if fg, err := unix.IoctlGetInt(fd, unix.TIOCGPGRP); err != nil || fg != pid {
		return
	}
	if tio.Lflag&unix.ISIG == 0 {
		// The program reads the key itself: wait for it to give the
		// terminal back, as it does before it stops itself.
		deadline := time.Now().Add(time.Second)
		for tio.Lflag&unix.ICANON == 0 {
			if time.Now().After(deadline) {
				return
			}
			time.Sleep(20 * time.Millisecond)
			if tio, err = unix.IoctlGetTermios(fd, unix.TCGETS); err != nil {
				return
			}
		}
	}
	if t.noStop.Load() {
		// Not stopped: a program that stopped itself in vain (its
		// SIGTSTP is discarded) is told to go on, as after fg.
		_ = syscall.Kill(-pid, syscall.SIGCONT)
		t.noteNoStop()
		return
	}
	_ = syscall.Kill(-pid, syscall.SIGSTOP)
}

// keepRunning sets noStop.
func (t *ptyTerm) keepRunning() { t.noStop.Store(true) }

// noteNoStop says once why the command was not suspended.
func (t *ptyTerm) noteNoStop() {
	t.stopNote.Do(func() {
		// At once, into the terminal (in raw mode: "\r\n"), not kept
		// back with the event lines: it answers the key just pressed.
		_, _ = fmt.Fprint(t.out, "\r\naigate: not suspended: this aigate run embeds the fanotify agent, which answers the kernel for every open of the marked files, also your shell's; stopped, it would make them wait (`sudo aigate setup` installs the agent as a service, and then Ctrl-Z works)\r\n")
	})
}

// rawOutput turns the real terminal's output processing off (the pty
// did it), which is all that changes when what is typed is not the
// command's. t.mu is held.
func (t *ptyTerm) rawOutput() error {
	fd := int(t.out.Fd())
	tio, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return err
	}
	saved := *tio
	tio.Oflag &^= unix.OPOST
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, tio); err != nil {
		return err
	}
	t.savedOut = &saved
	t.lines.raw.Store(true)
	return nil
}

// restoreMode gives the real terminal back its mode. t.mu is held.
func (t *ptyTerm) restoreMode() {
	if t.saved != nil {
		_ = term.Restore(int(t.in.Fd()), t.saved)
		t.saved = nil
	}
	if t.savedOut != nil {
		_ = unix.IoctlSetTermios(int(t.out.Fd()), unix.TCSETS, t.savedOut)
		t.savedOut = nil
	}
}

// restore gives the real terminal back its mode; safe to call again.
func (t *ptyTerm) restore() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.restoreMode()
	t.lines.raw.Store(false)
	select {
	case <-t.done:
	default:
		close(t.done)
		signal.Stop(t.winch)
		if t.active {
			// Answers to the command's queries (cursor position,
			// colours) that the terminal sent after the command
			// stopped reading would be read by the shell next: the
			// terminal's input is emptied once, the command gone.
			_ = unix.IoctlSetInt(int(t.out.Fd()), unix.TCFLSH, unix.TCIFLUSH)
		}
	}
}

// started watches the command for stops. The command is alone in its
// session on the pty: when it stops, the shell that started aigate would
// never know and the terminal would hang in raw mode. So aigate gives the
// terminal its mode back and stops its own process group as the terminal
// would have; on `fg` it continues, takes raw mode again and continues the
// command. Only SIGSTOP gets here: the command's group is orphaned (its
// parent is in another session), so the kernel discards Ctrl-Z's SIGTSTP.
func (t *ptyTerm) started(pid int) {
	t.pid.Store(int64(pid))
	go func() {
		for {
			var info unix.Siginfo
			// WSTOPPED only: the exit is left for the command's Wait.
			err := unix.Waitid(unix.P_PID, pid, &info, unix.WSTOPPED, nil)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return // gone (ECHILD once Wait has reaped it)
			}
			select {
			case <-t.done:
				return
			default:
			}
			if t.noStop.Load() {
				_ = syscall.Kill(-pid, syscall.SIGCONT)
				t.noteNoStop()
				continue
			}
			t.mu.Lock()
			t.restoreMode()
			t.mu.Unlock()
			// kill returns before the stop has reached every thread: this
			// one went on into makeRaw, set raw mode before the process
			// stopped, and the shell, on the stop, put its own mode back,
			// so after fg the terminal was in line mode and Ctrl-C
			// signalled aigate instead of reaching the command. Raw mode
			// is taken only once continued (SIGCONT).
			cont := make(chan os.Signal, 1)
			signal.Notify(cont, syscall.SIGCONT)
			_ = syscall.Kill(0, syscall.SIGTSTP)
			select {
			case <-cont:
				signal.Stop(cont)
			case <-t.done:
				signal.Stop(cont)
				return
			}
			_ = t.makeRaw()
			_ = pty.InheritSize(t.out, t.master)
			_ = syscall.Kill(-pid, syscall.SIGCONT)
		}
	}()
}
