package darwin

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"
)

// Check is one doctor result. Fix is the exact command (or action) that
// repairs a failed check.
type Check struct {
	Name   string
	OK     bool
	Detail string
	Fix    string
}

// DoctorCommands are the commands whose output the checks read.
func DoctorCommands(user string) map[string]Command {
	return map[string]Command{
		"pf":     cmd("pfctl", "-s", "info"),
		"anchor": cmd("pfctl", "-s", "Anchors"),
		"user":   ReadUserCommand(user),
	}
}

// CheckPFEnabled reads `pfctl -s info`, whose first line is
// "Status: Enabled for 0 days 00:12:03 ..." or "Status: Disabled ...".
func CheckPFEnabled(out string) Check {
	c := Check{Name: "pf enabled"}
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "Status:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 && f[0] == "Enabled" {
				c.OK, c.Detail = true, "pf is enabled"
				return c
			}
			c.Detail = "pf is " + strings.Join(f[:min(len(f), 1)], "")
			c.Fix = "aigate run enables pf itself; to enable it now: sudo pfctl -e"
			return c
		}
	}
	c.Detail = "cannot read pf status (no Status line in `pfctl -s info`; it needs root)"
	c.Fix = "sudo aigate doctor"
	return c
}

// CheckAnchorReferenced reads `pfctl -s Anchors`: the main ruleset must call
// com.aigate, or the rules loaded into the anchor are never evaluated.
func CheckAnchorReferenced(out string) Check {
	c := Check{Name: "pf anchor " + AnchorName}
	for _, line := range strings.Split(out, "\n") {
		if strings.TrimSpace(line) == AnchorName {
			c.OK, c.Detail = true, "referenced from the main ruleset"
			return c
		}
	}
	c.Detail = "the main pf ruleset does not reference " + AnchorName + ", so its rules would never apply"
	c.Fix = "sudo aigate setup   (adds `anchor \"com.aigate\"` to /etc/pf.conf and runs `sudo pfctl -f /etc/pf.conf`)"
	return c
}

// CheckPFConf reads /etc/pf.conf: after a macOS update replaces it the
// anchor line is gone, and the next boot loads no reference.
func CheckPFConf(conf string) Check {
	c := Check{Name: "pf.conf anchor line"}
	if _, changed, err := InstallAnchorLine(conf); err != nil {
		c.Detail, c.Fix = err.Error(), "edit /etc/pf.conf, then sudo aigate setup"
	} else if changed {
		c.Detail = "/etc/pf.conf has no aigate anchor line (a macOS update may have replaced the file)"
		c.Fix = "sudo aigate setup"
	} else {
		c.OK, c.Detail = true, "present"
	}
	return c
}

// CheckSandboxUser reads `dscl . -read /Users/<name> UniqueID
// PrimaryGroupID NFSHomeDirectory`; runErr is the command's error (dscl exits
// non-zero with "eDSRecordNotFound" when the user is missing). want carries
// the ids stored in the config; zero ids are not compared.
func CheckSandboxUser(out string, runErr error, want SandboxUser) Check {
	c := Check{Name: "sandbox user " + want.Name}
	if runErr != nil || strings.Contains(out, "eDSRecordNotFound") {
		c.Detail = "the user does not exist"
		c.Fix = "sudo aigate setup"
		return c
	}
	attrs := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok {
			attrs[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	uid, err := strconv.ParseUint(attrs["UniqueID"], 10, 32)
	if err != nil {
		c.Detail = "the user has no numeric UniqueID"
		c.Fix = "sudo aigate reset --force && sudo aigate setup"
		return c
	}
	gid, _ := strconv.ParseUint(attrs["PrimaryGroupID"], 10, 32)
	if want.UID != 0 && (uint32(uid) != want.UID || uint32(gid) != want.GID) {
		c.Detail = fmt.Sprintf("ids %d:%d differ from the config's %d:%d", uid, gid, want.UID, want.GID)
		c.Fix = "sudo aigate setup   (records the existing ids in the global config)"
		return c
	}
	c.OK, c.Detail = true, fmt.Sprintf("uid %d gid %d", uid, gid)
	return c
}
