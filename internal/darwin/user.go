package darwin

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"
)

// Sandbox user defaults. The user and group share one name so that ACL
// entries, pf rules and `ls -le` output read the same everywhere.
const (
	DefaultUserName = "_aigate"
	DefaultHome     = "/var/db/aigate/home"
)

// Hidden system ids. macOS hides users below 500 from the login window and
// treats them as system accounts; Apple allocates its own daemons upward from
// the low hundreds (_oahd is 441 on recent releases), so aigate searches
// [IDMin, IDMax] from the top down, where a collision with a future Apple
// account is least likely, and wants the same number free as both UID and GID.
const (
	IDMin = 400
	IDMax = 499
)

// SandboxUser is the account the tool runs as.
type SandboxUser struct {
	Name string `json:"name"`
	UID  uint32 `json:"uid"`
	GID  uint32 `json:"gid"`
	Home string `json:"home"`
}

// ParseIDList parses `dscl . -list /Users UniqueID` (or `/Groups
// PrimaryGroupID`) output: one "name id" pair per line.
func ParseIDList(out string) ([]uint32, error) {
	var ids []uint32
	sc := bufio.NewScanner(strings.NewReader(out))
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		// Some records carry several ids; every one of them is taken. A
		// record with the attribute unset is listed with its name alone
		// (accounts made by hand or by MDM tools): it uses no id.
		if len(f) < 2 {
			continue
		}
		for _, s := range f[1:] {
			id, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("dscl id list line %d: %q: %w", n, sc.Text(), err)
			}
			if id >= 0 && id <= 1<<32-1 {
				ids = append(ids, uint32(id))
			}
		}
	}
	return ids, sc.Err()
}

// ChooseID returns the highest id in [IDMin, IDMax] used neither as a UID
// nor as a GID.
func ChooseID(usedUIDs, usedGIDs []uint32) (uint32, error) {
	used := make(map[uint32]bool, len(usedUIDs)+len(usedGIDs))
	for _, id := range usedUIDs {
		used[id] = true
	}
	for _, id := range usedGIDs {
		used[id] = true
	}
	for id := uint32(IDMax); id >= IDMin; id-- {
		if !used[id] {
			return id, nil
		}
	}
	return 0, fmt.Errorf("no id in %d-%d is free as both UID and GID, and aigate creates its sandbox user only there: delete an unused account in that range (dscl . -list /Users UniqueID) and run setup again", IDMin, IDMax)
}

// CreateUserCommands returns the dscl (and mkdir/chown) lines that create the
// hidden group and user. The password is "*" so nobody can log in as it, the
// shell /usr/bin/false so it has no interactive session.
func CreateUserCommands(u SandboxUser) []Command {
	g := "/Groups/" + u.Name
	p := "/Users/" + u.Name
	uid := strconv.FormatUint(uint64(u.UID), 10)
	gid := strconv.FormatUint(uint64(u.GID), 10)
	return []Command{
		cmd("dscl", ".", "-create", g),
		cmd("dscl", ".", "-create", g, "PrimaryGroupID", gid),
		cmd("dscl", ".", "-create", g, "RealName", "aigate sandbox"),
		cmd("dscl", ".", "-create", g, "Password", "*"),
		cmd("dscl", ".", "-create", p),
		cmd("dscl", ".", "-create", p, "UniqueID", uid),
		cmd("dscl", ".", "-create", p, "PrimaryGroupID", gid),
		cmd("dscl", ".", "-create", p, "RealName", "aigate sandbox"),
		cmd("dscl", ".", "-create", p, "NFSHomeDirectory", u.Home),
		cmd("dscl", ".", "-create", p, "UserShell", "/usr/bin/false"),
		cmd("dscl", ".", "-create", p, "Password", "*"),
		cmd("dscl", ".", "-create", p, "IsHidden", "1"),
		cmd("mkdir", "-p", u.Home),
		cmd("chown", uid+":"+gid, u.Home),
		cmd("chmod", "0700", u.Home),
	}
}

// RemoveUserCommands undoes CreateUserCommands. The home directory is removed
// only when it is the one aigate created, never a path a user configured.
func RemoveUserCommands(u SandboxUser) []Command {
	cs := []Command{
		cmd("dscl", ".", "-delete", "/Users/"+u.Name),
		cmd("dscl", ".", "-delete", "/Groups/"+u.Name),
	}
	if u.Home == DefaultHome {
		cs = append(cs, cmd("rm", "-rf", u.Home))
	}
	return cs
}

// ReadUserCommand is what doctor runs to check the user; see CheckSandboxUser.
func ReadUserCommand(name string) Command {
	return cmd("dscl", ".", "-read", "/Users/"+name, "UniqueID", "PrimaryGroupID", "NFSHomeDirectory")
}
