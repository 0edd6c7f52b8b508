//go:build linux

package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/launch"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// A create of protocol version 3 carries the pid of the caller's waiting
// exec helper (api.CreateRequest.Place); the agent moves it in while the
// backend builds the sandbox. These tests hold the three guarantees: the
// command never runs before the sandbox's enforcement is complete, a
// failed create or a client gone before the go-ahead kills the helper,
// and only a process the caller may place is moved.

// prepareHelper starts an exec helper for sh -c script, waiting for its
// go-ahead; the test aborts it at the end.
func prepareHelper(t *testing.T, script string) *launch.Helper {
	t.Helper()
	h, err := launch.Prepare(exec.Command("/bin/sh", "-c", script))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Abort)
	return h
}

// TestCreatePlacesBeforeAnswer: the helper is in the sandbox's cgroup
// while the backend is still at work, the create is answered only once
// the backend's Add has returned (the session is then placed: no place
// request), and the command runs only after the client's go-ahead.
func TestCreatePlacesBeforeAnswer(t *testing.T) {
	testutil.HostOnly(t)
	ta := startAgent(t, "", "")
	marker := filepath.Join(t.TempDir(), "ran")
	h := prepareHelper(t, "touch "+marker)

	adding := make(chan string, 1) // the helper's cgroup during Add
	release := make(chan struct{})
	ta.be.onAdd = func(sb *enforce.Sandbox) error {
		if sb.Enter == nil {
			adding <- "no Enter: the helper is not placed during the create"
		} else if err := sb.Enter(); err != nil {
			adding <- "Enter: " + err.Error()
		} else if cg, err := cgroup.ProcessCgroup(h.Pid()); err != nil {
			adding <- err.Error()
		} else if filepath.Join(cgroupRoot(t), cg) != sb.CgroupPath {
			adding <- fmt.Sprintf("the helper is in %s during Add, want %s", cg, sb.CgroupPath)
		} else {
			adding <- ""
		}
		<-release
		return nil
	}
	req := createReq(t)
	req.Place = &api.PlaceRequest{PID: h.Pid()}
	type created struct {
		s   *api.Session
		err error
	}
	done := make(chan created, 1)
	go func() {
		s, err := ta.client.CreateSandbox(context.Background(), req)
		done <- created{s, err}
	}()
	if msg := <-adding; msg != "" {
		close(release)
		t.Fatal(msg)
	}
	select {
	case c := <-done:
		t.Fatalf("the create was answered (%v) while the backend was still adding the sandbox", c.err)
	case <-time.After(200 * time.Millisecond):
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatalf("the command ran before the sandbox was complete (%v)", err)
	}
	close(release)
	c := <-done
	if c.err != nil {
		t.Fatal(c.err)
	}
	defer c.s.Close()
	if !c.s.Placed() || c.s.PlacedPID() != h.Pid() {
		t.Fatalf("session placed %v pid %d, want the helper %d placed", c.s.Placed(), c.s.PlacedPID(), h.Pid())
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatalf("the command ran before its go-ahead (%v)", err)
	}
	child, err := h.Start(c.s)
	if err != nil {
		t.Fatal(err)
	}
	if code, err := child.Wait(); err != nil || code != 0 {
		t.Fatalf("command: exit %d, %v", code, err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("the command did not run after its go-ahead: %v", err)
	}
	select {
	case <-c.s.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the session did not end after the command exited")
	}
	if e, err := c.s.Result(); err != nil || e.Reason != "empty" {
		t.Fatalf("session ended %+v, %v; want empty", e, err)
	}
}

// TestCreatePlaceFailureKillsHelper: when the sandbox cannot be completed
// after the helper was moved in, the create is refused and the helper is
// killed with the cgroup; the command never runs.
func TestCreatePlaceFailureKillsHelper(t *testing.T) {
	testutil.HostOnly(t)
	ta := startAgent(t, "", "")
	marker := filepath.Join(t.TempDir(), "ran")
	h := prepareHelper(t, "touch "+marker)
	var cgroupPath string
	ta.be.onAdd = func(sb *enforce.Sandbox) error {
		cgroupPath = sb.CgroupPath
		if err := sb.Enter(); err != nil {
			return err
		}
		return errors.New("map update refused")
	}
	req := createReq(t)
	req.Place = &api.PlaceRequest{PID: h.Pid()}
	_, err := ta.client.CreateSandbox(context.Background(), req)
	if err == nil || !strings.Contains(err.Error(), "map update refused") {
		t.Fatalf("create = %v, want the backend's refusal", err)
	}
	// The client still holds the go-ahead pipe: only the agent's kill
	// ends the helper.
	waitFor(t, "the helper is killed", func() bool { return !processAlive(h.Pid()) })
	if _, err := os.Stat(cgroupPath); !os.IsNotExist(err) {
		t.Fatalf("cgroup %s left behind (%v)", cgroupPath, err)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatalf("the command ran (%v)", err)
	}
	if n := len(ta.list(api.Peer{UID: 0})); n != 0 {
		t.Fatalf("%d sandboxes after the refused create", n)
	}
}

// TestCreatePlaceClientGone: a client that dies (closes its session)
// between the create's answer and the go-ahead takes its helper with it:
// the agent ends the sandbox and kills what is in it, before anything ran.
func TestCreatePlaceClientGone(t *testing.T) {
	testutil.HostOnly(t)
	ta := startAgent(t, "", "")
	marker := filepath.Join(t.TempDir(), "ran")
	h := prepareHelper(t, "touch "+marker)
	req := createReq(t)
	req.Place = &api.PlaceRequest{PID: h.Pid()}
	nc, err := net.Dial("unix", ta.Socket())
	if err != nil {
		t.Fatal(err)
	}
	c := api.NewConn(nc)
	if err := c.Write(&api.Request{V: api.Version, Op: api.OpCreate, Create: &req}, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	var resp api.Response
	if err := c.Read(&resp, time.Now().Add(30*time.Second)); err != nil || !resp.OK || resp.Sandbox == nil {
		t.Fatalf("create: %+v, %v", resp, err)
	}
	if !resp.Sandbox.Placed {
		t.Fatalf("the create's answer says the helper is not placed: %+v", resp.Sandbox)
	}
	nc.Close()
	waitFor(t, "the helper is killed", func() bool { return !processAlive(h.Pid()) })
	waitFor(t, "the sandbox is removed", func() bool { return len(ta.list(api.Peer{UID: 0})) == 0 })
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatalf("the command ran (%v)", err)
	}
}

// TestCreatePlaceRefused: a create that names a process the caller may not
// place is refused before anything is built, and the process stays where
// it was: another user's process, the user's process that is not the
// caller's child, a process in a sandbox already, one that is gone, and
// one reaped between the checks and the move.
func TestCreatePlaceRefused(t *testing.T) {
	testutil.HostOnly(t)
	testutil.RequireRoot(t)
	ta := startAgent(t, "", "")
	root := api.Peer{UID: 0, PID: os.Getpid()}
	start := func(uid uint32) *exec.Cmd {
		cmd := exec.Command("sleep", "60")
		if uid != 0 {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	// A process already in a sandbox: a helper placed by an earlier create.
	inside := prepareHelper(t, "sleep 60")
	req := createReq(t)
	req.Place = &api.PlaceRequest{PID: inside.Pid()}
	first, _, e := ta.create(context.Background(), root, &req)
	if e != nil {
		t.Fatal(e)
	}
	defer ta.end(first, "ended")
	insideCg, _ := cgroup.ProcessCgroup(inside.Pid())

	reaped := start(0)
	reaped.Process.Kill()
	reaped.Wait()

	for _, c := range []struct {
		name string
		peer api.Peer
		pid  int
		code string
		want string
	}{
		{"another user's process", api.Peer{UID: 65534, PID: os.Getpid()}, start(0).Process.Pid, api.CodeForbidden, "is not yours"},
		{"not the caller's child", api.Peer{UID: 65534, PID: 1}, start(65534).Process.Pid, api.CodeForbidden, "is not your child"},
		{"already in a sandbox", root, inside.Pid(), api.CodeForbidden, "is already in a sandbox"},
		{"gone", root, reaped.Process.Pid, api.CodeSandbox, "no such process"},
		{"reaped after the checks", root, 0, api.CodeSandbox, "exited before it could be placed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			pid := c.pid
			if pid == 0 {
				cmd := start(0)
				pid = cmd.Process.Pid
				placeChecked = func(int) { cmd.Process.Kill(); cmd.Wait() }
				defer func() { placeChecked = func(int) {} }()
			}
			before, _ := cgroup.ProcessCgroup(pid)
			r := createReq(t)
			r.Place = &api.PlaceRequest{PID: pid}
			b, _, e := ta.create(context.Background(), c.peer, &r)
			if e == nil {
				ta.end(b, "ended")
				t.Fatalf("create placing pid %d was not refused", pid)
			}
			if e.Code != c.code || !strings.Contains(e.Message, c.want) {
				t.Fatalf("create: %s: %s; want %s saying %q", e.Code, e.Message, c.code, c.want)
			}
			if after, err := cgroup.ProcessCgroup(pid); err == nil && after != before {
				t.Fatalf("process %d moved from %s to %s", pid, before, after)
			}
			if n := len(ta.list(root)); n != 1 {
				t.Fatalf("%d sandboxes after the refusal, want only the first", n)
			}
		})
	}
	// Two creates name the same child: the second to move finds it in the
	// first's sandbox, although its checks, made before, passed.
	t.Run("placed elsewhere after the checks", func(t *testing.T) {
		h := prepareHelper(t, "sleep 60")
		var other *box
		var otherErr *api.Error
		nested := false
		placeChecked = func(int) {
			if nested {
				return
			}
			nested = true
			r := createReq(t)
			r.Place = &api.PlaceRequest{PID: h.Pid()}
			other, _, otherErr = ta.create(context.Background(), root, &r)
		}
		defer func() { placeChecked = func(int) {} }()
		r := createReq(t)
		r.Place = &api.PlaceRequest{PID: h.Pid()}
		b, _, e := ta.create(context.Background(), root, &r)
		if otherErr != nil {
			t.Fatalf("the other create: %v", otherErr)
		}
		defer ta.end(other, "ended")
		if e == nil {
			ta.end(b, "ended")
			t.Fatal("the process was moved out of the sandbox another create had placed it in")
		}
		if e.Code != api.CodeForbidden || !strings.Contains(e.Message, "is already in a sandbox") {
			t.Fatalf("create: %s: %s; want forbidden, already in a sandbox", e.Code, e.Message)
		}
		if cg, _ := cgroup.ProcessCgroup(h.Pid()); filepath.Join(cgroupRoot(t), cg) != other.sb.Path() {
			t.Fatalf("the helper is in %s, want %s", cg, other.sb.Path())
		}
	})
	if cg, _ := cgroup.ProcessCgroup(inside.Pid()); cg != insideCg {
		t.Fatalf("the sandboxed helper moved from %s to %s", insideCg, cg)
	}
}

func cgroupRoot(t *testing.T) string {
	t.Helper()
	root, err := cgroup.Mountpoint()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// processAlive reports whether pid exists and has not exited (a zombie
// has).
func processAlive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || (s[i+2] != 'Z' && s[i+2] != 'X')
}
