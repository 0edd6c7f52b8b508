package darwin

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
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
		"anchor": AnchorRulesCommand(),
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

// AnchorRulesCommand lists the main ruleset. Its "anchor" lines are what
// the kernel evaluates; `pfctl -s Anchors` is not enough, because loading
// rules into an anchor creates it (and lists it) even when nothing calls it.
func AnchorRulesCommand() Command { return cmd("pfctl", "-s", "rules") }

// CheckAnchorReferenced reads `pfctl -s rules` (AnchorRulesCommand): the
// main ruleset must call com.aigate, or the rules loaded into the anchor are
// never evaluated and the sandbox's network is open. A bare "com.aigate"
// line (`pfctl -s Anchors` output) is accepted too.
func CheckAnchorReferenced(out string) Check {
	c := Check{Name: "pf anchor " + AnchorName}
	for _, line := range strings.Split(out, "\n") {
		t := strings.TrimSpace(line)
		if t == AnchorName || t == confAnchor || strings.HasPrefix(t, confAnchor+" ") {
			c.OK, c.Detail = true, "referenced from the main ruleset"
			return c
		}
	}
	c.Detail = "the main pf ruleset does not reference " + AnchorName + ", so its rules would never apply"
	c.Fix = "sudo aigate setup   (adds `anchor \"com.aigate\"` to /etc/pf.conf and runs `sudo pfctl -f /etc/pf.conf`)"
	return c
}

// CheckAnchorFirst reads `pfctl -s rules`: a filter rule evaluated before
// the com.aigate anchor (an anchor with "pass quick" rules, as VPN kill
// switches load) can let the sandbox user's traffic through before
// aigate's rules are reached. Apple's own com.apple anchors are empty
// unless a sharing service is on, so they only count as a warning too.
func CheckAnchorFirst(out string) Check {
	c := Check{Name: "pf anchor " + AnchorName + " first"}
	var before []string
	for _, line := range strings.Split(out, "\n") {
		t := strings.TrimSpace(line)
		if t == confAnchor || strings.HasPrefix(t, confAnchor+" ") {
			if len(before) == 0 {
				c.OK, c.Detail = true, "evaluated before every other filter rule"
				return c
			}
			c.Detail = "evaluated after " + strings.Join(before, "; ") + ": a \"pass quick\" there would let the sandbox user's traffic through"
			c.Fix = "sudo aigate setup   (moves the anchor before the first filter rule in /etc/pf.conf)"
			return c
		}
		if isFilterRule(t) {
			before = append(before, t)
		}
	}
	c.Detail = "the main pf ruleset does not reference " + AnchorName
	c.Fix = "sudo aigate setup"
	return c
}

// CheckPFConf reads /etc/pf.conf: after a macOS update replaces it the
// anchor line is gone, and the next boot loads no reference.
func CheckPFConf(conf string) Check {
	c := Check{Name: "pf.conf anchor line"}
	if _, changed, err := InstallAnchorLine(conf); err != nil {
		c.Detail, c.Fix = err.Error(), "edit /etc/pf.conf, then sudo aigate setup"
	} else if changed {
		c.Detail = "/etc/pf.conf has no aigate anchor line before its first filter rule (a macOS update may have replaced the file)"
		c.Fix = "sudo aigate setup"
	} else {
		c.OK, c.Detail = true, "present"
	}
	return c
}

// CheckSandboxUser reads `dscl . -read /Users/<name> UniqueID
// PrimaryGroupID NFSHomeDirectory`; runErr is the command's error (dscl exits
// non-zero with "eDSRecordNotFound" when the user is missing). want carries
// the ids recorded by setup (UserFileName); zero ids are not compared.
func CheckSandboxUser(out string, runErr error, want SandboxUser) Check {
	c := Check{Name: "sandbox user " + want.Name}
	if runErr != nil || strings.Contains(out, "eDSRecordNotFound") {
		c.Detail = "the user does not exist"
		c.Fix = "sudo aigate setup"
		return c
	}
	got, err := ParseUserRecord(want.Name, out)
	if err != nil {
		c.Detail = err.Error()
		c.Fix = "sudo aigate reset --force && sudo aigate setup"
		return c
	}
	uid, gid := got.UID, got.GID
	if want.UID != 0 && (uid != want.UID || gid != want.GID) {
		c.Detail = fmt.Sprintf("ids %d:%d differ from the %d:%d setup recorded", uid, gid, want.UID, want.GID)
		c.Fix = "sudo aigate setup   (records the existing ids)"
		return c
	}
	c.OK, c.Detail = true, fmt.Sprintf("uid %d gid %d", uid, gid)
	return c
}

// ParseUserRecord reads the output of ReadUserCommand into a SandboxUser.
func ParseUserRecord(name, out string) (SandboxUser, error) {
	attrs := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok {
			attrs[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	uid, err := strconv.ParseUint(attrs["UniqueID"], 10, 32)
	if err != nil {
		return SandboxUser{}, fmt.Errorf("user %s has no numeric UniqueID", name)
	}
	gid, err := strconv.ParseUint(attrs["PrimaryGroupID"], 10, 32)
	if err != nil {
		return SandboxUser{}, fmt.Errorf("user %s has no numeric PrimaryGroupID", name)
	}
	return SandboxUser{Name: name, UID: uint32(uid), GID: uint32(gid), Home: attrs["NFSHomeDirectory"]}, nil
}

// AnchorCheckInterval is how often a session checks that pf still calls
// the anchor. A VPN client that loads its own main ruleset (pfctl -f)
// drops the call without a word, and from then on the anchor's rules are
// not evaluated; `pfctl -s rules` is cheap.
const AnchorCheckInterval = 10 * time.Second

// WatchAnchor checks every interval, until ctx ends, that the main
// ruleset still calls the anchor (CheckAnchorReferenced). The first time it
// does not, or the ruleset cannot be read, lost is called with why, and the
// watch ends: the session must not go on with its network open.
func WatchAnchor(ctx context.Context, r Runner, interval time.Duration, lost func(string)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c := AnchorRulesCommand()
		out, err := c.run(ctx, r)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			lost(runError("read the pf ruleset", c, out, err).Error())
			return
		}
		if chk := CheckAnchorReferenced(string(out)); !chk.OK {
			lost(chk.Detail)
			return
		}
	}
}
