package run

import (
	"errors"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/aigate-dev/aigate/internal/cmdutil"
	"github.com/aigate-dev/aigate/internal/mask"
)

// ptyTerm runs the command on a pseudo-terminal, so that its output can be
// masked while it still sees a terminal (raw mode, colours, size): the real
// terminal is put in raw mode and every byte typed goes to the pty, whose
// own line discipline turns Ctrl-C, Ctrl-\ and Ctrl-Z into signals for the
// command; what the command writes comes back through the masking writer.
type ptyTerm struct {
	f      *cmdutil.Factory
	master *os.File
	in     *os.File // the real terminal (stdin)
	out    *os.File // the real terminal (stdout), whose size the pty copies
	lines  *lineWriter

	mu    sync.Mutex
	saved *term.State // the real terminal's mode, nil when not raw
	winch chan os.Signal
	done  chan struct{}
}

func openPTY(f *cmdutil.Factory, m *mask.Matcher, s *runStdio) (*ptyTerm, error) {
	master, slave, err := pty.Open()
	if err != nil {
		return nil, errors.New("masked output: open a pseudo-terminal: " + err.Error())
	}
	t := &ptyTerm{f: f, master: master, in: f.In.(*os.File), out: f.Out.(*os.File), lines: s.lines,
		winch: make(chan os.Signal, 1), done: make(chan struct{})}
	_ = pty.InheritSize(t.out, master)
	s.Stdin, s.Stdout, s.Ctty = slave, slave, true
	s.childEnds = append(s.childEnds, slave)
	// Full-screen programs count columns: keep the width of a secret.
	s.copy(master, mask.NewWriter(f.Out, m, mask.Options{}))
	if err := t.makeRaw(); err != nil {
		_ = master.Close()
		_ = slave.Close()
		return nil, errors.New("masked output: put the terminal in raw mode: " + err.Error())
	}
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
	// What is typed goes to the command. This read of the terminal cannot
	// be interrupted; it ends with aigate.
	go func() { _, _ = copyInput(master, t.in) }()
	return t, nil
}

func copyInput(dst, src *os.File) (int64, error) {
	buf := make([]byte, 4096)
	var n int64
	for {
		k, err := src.Read(buf)
		if k > 0 {
			if _, werr := dst.Write(buf[:k]); werr != nil {
				return n, werr
			}
			n += int64(k)
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
	st, err := term.MakeRaw(int(t.in.Fd()))
	if err != nil {
		return err
	}
	t.saved = st
	t.lines.raw.Store(true)
	return nil
}

// restore gives the real terminal back its mode; safe to call again.
func (t *ptyTerm) restore() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.saved != nil {
		_ = term.Restore(int(t.in.Fd()), t.saved)
		t.saved = nil
	}
	t.lines.raw.Store(false)
	select {
	case <-t.done:
	default:
		close(t.done)
		signal.Stop(t.winch)
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
			t.mu.Lock()
			if t.saved != nil {
				_ = term.Restore(int(t.in.Fd()), t.saved)
				t.saved = nil
			}
			t.mu.Unlock()
			_ = syscall.Kill(0, syscall.SIGTSTP)
			// Continued (fg).
			select {
			case <-t.done:
				return
			default:
			}
			_ = t.makeRaw()
			_ = pty.InheritSize(t.out, t.master)
			_ = syscall.Kill(-pid, syscall.SIGCONT)
		}
	}()
}
