package darwin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// DataDir holds aigate's machine-wide macOS files: the sandbox user's
// record, the session state file and the sandbox user's home. Only root may
// write in it: the state file lists commands that root runs at the next run
// or reset, so a copy the invoking user (or anything running as them) could
// edit would be a way to root. One directory per machine also matches pf,
// which matches one sandbox user per machine: the state file there is the
// lock that keeps two sessions, even of two people, from sharing the anchor.
const DataDir = "/var/db/aigate"

// UserFileName is where setup records the sandbox user it created.
const UserFileName = "sandbox-user.json"

// PFConfBackupSuffix names the copy of pf.conf taken before each change.
const PFConfBackupSuffix = ".aigate-backup"

// ErrNotSetUp means `sudo aigate setup` has not run (or was undone), so a
// run could not enforce the policy.
var ErrNotSetUp = errors.New("aigate is not set up on this Mac")

// Machine says where the machine-wide pieces are; DefaultMachine is the
// real layout, tests point it at a temporary directory.
type Machine struct {
	Dir      string // DataDir
	PFConf   string // PFConf
	UserName string // DefaultUserName
	Home     string // DefaultHome
	// PID is this process; Alive reports whether the session that wrote a
	// state file still runs (nil: assume it does).
	PID   int
	Alive func(pid int) bool
}

// DefaultMachine is the layout on a real Mac.
func DefaultMachine() Machine {
	return Machine{Dir: DataDir, PFConf: PFConf, UserName: DefaultUserName, Home: DefaultHome, PID: os.Getpid()}
}

// UserFile is the sandbox user's record.
func (m Machine) UserFile() string { return filepath.Join(m.Dir, UserFileName) }

// StateFile is the session state file.
func (m Machine) StateFile() string { return filepath.Join(m.Dir, StateFileName) }

// CheckDir refuses a data directory that someone other than root (or this
// process's user, for tests) could have written: what is read from it
// decides which account the tool runs as and which commands root runs.
func (m Machine) CheckDir() error {
	fi, err := os.Lstat(m.Dir)
	if err != nil {
		return err
	}
	uid, ok := ownerUID(fi)
	switch {
	case !fi.IsDir():
		return fmt.Errorf("%s is not a directory (a symbolic link?): remove it and run `sudo aigate setup`", m.Dir)
	case !ok || uid != 0 && int(uid) != os.Geteuid():
		return fmt.Errorf("%s is not owned by root: remove it and run `sudo aigate setup`", m.Dir)
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("%s is writable by others (mode %v): sudo chmod go-w %s", m.Dir, fi.Mode().Perm(), m.Dir)
	}
	return nil
}

// ReadUserFile returns the sandbox user setup recorded. A missing record
// is ErrNotSetUp; a record whose ids aigate would not have chosen is an
// error, because the tool runs with exactly those ids.
func (m Machine) ReadUserFile() (SandboxUser, error) {
	if err := m.CheckDir(); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return SandboxUser{}, fmt.Errorf("%w: no %s", ErrNotSetUp, m.Dir)
		}
		return SandboxUser{}, err
	}
	b, err := os.ReadFile(m.UserFile())
	if errors.Is(err, os.ErrNotExist) {
		return SandboxUser{}, fmt.Errorf("%w: no %s", ErrNotSetUp, m.UserFile())
	}
	if err != nil {
		return SandboxUser{}, fmt.Errorf("read sandbox user: %w", err)
	}
	var u SandboxUser
	if err := json.Unmarshal(b, &u); err != nil {
		return SandboxUser{}, fmt.Errorf("%s is damaged (%v): run `sudo aigate setup`", m.UserFile(), err)
	}
	if err := validUser(u); err != nil {
		return SandboxUser{}, fmt.Errorf("%s: %w", m.UserFile(), err)
	}
	return u, nil
}

// validUser accepts only what setup creates: a name that reads the same in
// chmod and pf rules, ids in [IDMin, IDMax] (never root's, never a person's,
// never a shared group such as staff) and an absolute home.
func validUser(u SandboxUser) error {
	if u.Name == "" || strings.ContainsFunc(u.Name, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-')
	}) {
		return fmt.Errorf("sandbox user name %q: want letters, digits, _ and -", u.Name)
	}
	if u.UID < IDMin || u.UID > IDMax || u.GID < IDMin || u.GID > IDMax {
		return fmt.Errorf("sandbox user %s has ids %d:%d, outside the %d-%d aigate creates; refusing to run tools as it: remove the account (sudo dscl . -delete /Users/%s) and run `sudo aigate setup`",
			u.Name, u.UID, u.GID, IDMin, IDMax, u.Name)
	}
	if !filepath.IsAbs(u.Home) || filepath.Clean(u.Home) == "/" {
		return fmt.Errorf("sandbox user %s has home %q: want an absolute directory of its own", u.Name, u.Home)
	}
	return nil
}

// SetupResult says what Setup did.
type SetupResult struct {
	User          SandboxUser
	CreatedUser   bool
	PFConfChanged bool
	Backup        string // copy of pf.conf before the change, "" if unchanged
	Warnings      []string
}

// Setup prepares the machine, and can run again at any time (after a macOS
// update replaced pf.conf, say): it creates the data directory, the hidden
// user and group unless they exist, records them, installs the anchor line
// in pf.conf (keeping a backup) and reloads pf. pf is left as it was
// (enabled or not): each run enables it with a reference token and releases
// that token at the end.
func Setup(ctx context.Context, r Runner, m Machine) (*SetupResult, error) {
	// 0755: the sandbox user must traverse it to reach its home.
	if err := os.MkdirAll(m.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", m.Dir, err)
	}
	if err := m.CheckDir(); err != nil {
		return nil, err
	}
	if err := os.Chmod(m.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", m.Dir, err)
	}
	u, created, err := ensureUser(ctx, r, m)
	if err != nil {
		return nil, err
	}
	res := &SetupResult{User: u, CreatedUser: created}
	b, err := json.MarshalIndent(u, "", "  ")
	if err != nil {
		return nil, err
	}
	// 0644: doctor reads it without root.
	if err := writeFileAtomic(m.UserFile(), append(b, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("record the sandbox user: %w", err)
	}

	old, err := os.ReadFile(m.PFConf)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", m.PFConf, err)
	}
	conf, changed, err := InstallAnchorLine(string(old))
	if err != nil {
		return nil, err
	}
	if changed {
		if res.Backup, err = replacePFConf(m.PFConf, old, []byte(conf)); err != nil {
			return nil, err
		}
		res.PFConfChanged = true
	}
	load := cmd("pfctl", "-f", m.PFConf)
	if out, err := load.run(ctx, r); err != nil {
		err = runError("load "+m.PFConf, load, out, err)
		if changed {
			// pf refused the file: put back the one it accepted before.
			if rerr := writeFileAtomic(m.PFConf, old, 0o644); rerr != nil {
				return nil, fmt.Errorf("%w; restoring %s also failed: %v (copy %s over it)", err, m.PFConf, rerr, res.Backup)
			}
			return nil, fmt.Errorf("%w; %s is restored", err, m.PFConf)
		}
		return nil, err
	}
	// pflog0 may exist already; without it only events are lost, and each
	// run creates it again.
	logIf := cmd("ifconfig", PFLogIf, "create")
	if out, err := logIf.run(ctx, r); err != nil && !strings.Contains(string(out)+err.Error(), "exists") {
		res.Warnings = append(res.Warnings, runError("create the pf log interface", logIf, out, err).Error())
	}
	return res, nil
}

// replacePFConf writes the backup, then conf, keeping pf.conf's mode.
func replacePFConf(path string, old, conf []byte) (string, error) {
	perm := os.FileMode(0o644)
	if fi, err := os.Stat(path); err == nil {
		perm = fi.Mode().Perm()
	}
	backup := path + PFConfBackupSuffix
	if err := writeFileAtomic(backup, old, perm); err != nil {
		return "", fmt.Errorf("back up %s: %w", path, err)
	}
	if err := writeFileAtomic(path, conf, perm); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return backup, nil
}

// lookupUser reads the account; (nil, nil) when it does not exist.
func lookupUser(ctx context.Context, r Runner, name string) (*SandboxUser, error) {
	c := ReadUserCommand(name)
	out, err := c.run(ctx, r)
	if strings.Contains(string(out), "eDSRecordNotFound") {
		return nil, nil
	}
	if err != nil {
		return nil, runError("look up user "+name, c, out, err)
	}
	u, err := ParseUserRecord(name, string(out))
	if err != nil {
		return nil, err
	}
	return &u, nil
}

func ensureUser(ctx context.Context, r Runner, m Machine) (SandboxUser, bool, error) {
	found, err := lookupUser(ctx, r, m.UserName)
	if err != nil {
		return SandboxUser{}, false, err
	}
	if found != nil {
		// An earlier setup made it: keep its ids, files the tool created
		// in projects belong to them.
		return *found, false, validUser(*found)
	}
	var used [2][]uint32
	for i, c := range []Command{
		cmd("dscl", ".", "-list", "/Users", "UniqueID"),
		cmd("dscl", ".", "-list", "/Groups", "PrimaryGroupID"),
	} {
		out, err := c.run(ctx, r)
		if err != nil {
			return SandboxUser{}, false, runError("list ids", c, out, err)
		}
		if used[i], err = ParseIDList(string(out)); err != nil {
			return SandboxUser{}, false, err
		}
	}
	id, err := ChooseID(used[0], used[1])
	if err != nil {
		return SandboxUser{}, false, err
	}
	u := SandboxUser{Name: m.UserName, UID: id, GID: id, Home: m.Home}
	if err := validUser(u); err != nil {
		return SandboxUser{}, false, err
	}
	for _, c := range CreateUserCommands(u) {
		if out, err := c.run(ctx, r); err != nil {
			err = runError("create user "+u.Name, c, out, err)
			// Half an account is worse than none: the next setup would
			// find the user and keep it.
			var errs []error
			for _, undo := range RemoveUserCommands(u) {
				if out, uerr := undo.run(context.WithoutCancel(ctx), r); uerr != nil && !alreadyUndone(undo, out, uerr) {
					errs = append(errs, runError("undo", undo, out, uerr))
				}
			}
			if len(errs) > 0 {
				return SandboxUser{}, false, fmt.Errorf("%w; removing it again also failed: %v", err, errors.Join(errs...))
			}
			return SandboxUser{}, false, err
		}
	}
	return u, true, nil
}

// ResetPlan lists what Reset would remove, for `aigate reset`'s dry run.
// It reads only, so it works without root.
func ResetPlan(ctx context.Context, r Runner, m Machine) []string {
	var plan []string
	if st, err := ReadState(m.StateFile()); err != nil {
		plan = append(plan, m.StateFile()+" ("+err.Error()+")")
	} else if st != nil {
		plan = append(plan, fmt.Sprintf("%d change(s) a run left (ACL entries, pf anchor), recorded in %s", len(st.Records), m.StateFile()))
	}
	if b, err := os.ReadFile(m.PFConf); err == nil {
		if _, had, _ := RemoveAnchorLine(string(b)); had {
			plan = append(plan, "the aigate anchor block in "+m.PFConf)
		}
	}
	if u, err := lookupUser(ctx, r, m.UserName); err == nil && u != nil {
		plan = append(plan, fmt.Sprintf("user and group %s (uid %d, gid %d)", u.Name, u.UID, u.GID))
	}
	for _, p := range []string{m.Home, m.UserFile()} {
		if _, err := os.Lstat(p); err == nil {
			plan = append(plan, p)
		}
	}
	return plan
}

// Reset undoes Setup and whatever a run left behind: the recorded ACL
// entries and anchor first (while the user they name still exists), then
// the pf.conf block, then the account, its home and the record. It refuses
// while a session runs, since that would open its sandbox. Each step is
// tried even when an earlier one failed; report hears what was removed.
func Reset(ctx context.Context, r Runner, m Machine, report func(string)) error {
	if report == nil {
		report = func(string) {}
	}
	if _, err := os.Lstat(m.Dir); err == nil {
		// Root runs the state file's commands: only from a safe place.
		if err := m.CheckDir(); err != nil {
			return err
		}
	}
	st, err := ReadState(m.StateFile())
	if err != nil {
		return err
	}
	if st != nil {
		if st.PID != m.PID && (m.Alive == nil || m.Alive(st.PID)) {
			return fmt.Errorf("%w (pid %d): end it first", ErrBusy, st.PID)
		}
		// What the dead session left running must not outlive its
		// rules.
		if u, err := lookupUser(ctx, r, m.UserName); err != nil {
			return err
		} else if u != nil {
			if err := EndUserProcesses(ctx, r, *u); err != nil {
				return err
			}
		}
		if err := Revert(ctx, r, m.StateFile()); err != nil {
			return fmt.Errorf("undo what a run left: %w", err)
		}
		report(fmt.Sprintf("undid %d change(s) a run left", len(st.Records)))
	}
	var errs []error
	if old, err := os.ReadFile(m.PFConf); err == nil {
		conf, had, err := RemoveAnchorLine(string(old))
		switch {
		case err != nil:
			errs = append(errs, err)
		case had:
			if _, err := replacePFConf(m.PFConf, old, []byte(conf)); err != nil {
				errs = append(errs, err)
				break
			}
			report("removed the aigate block from " + m.PFConf)
			c := cmd("pfctl", "-f", m.PFConf)
			if out, err := c.run(ctx, r); err != nil {
				errs = append(errs, runError("reload "+m.PFConf, c, out, err))
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("read %s: %w", m.PFConf, err))
	}
	u, err := lookupUser(ctx, r, m.UserName)
	if err != nil {
		errs = append(errs, err)
	} else if u != nil {
		// RemoveUserCommands deletes the home only when it is aigate's own.
		n := len(errs)
		for _, c := range RemoveUserCommands(*u) {
			if out, err := c.run(ctx, r); err != nil && !alreadyUndone(c, out, err) {
				errs = append(errs, runError("remove user "+u.Name, c, out, err))
			}
		}
		if len(errs) == n {
			report("removed user and group " + u.Name)
		}
	}
	if err := os.Remove(m.UserFile()); err == nil {
		report("removed " + m.UserFile())
	} else if !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	// Only an empty directory goes: anything else in it is not ours.
	if err := os.Remove(m.Dir); err == nil {
		report("removed " + m.Dir)
	}
	return errors.Join(errs...)
}
