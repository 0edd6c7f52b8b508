package doctor

import (
	"context"
	"errors"

	"github.com/aigate-dev/aigate/internal/darwin"
)

// BackendDarwin is Report.Backend on macOS: ACL entries and a pf anchor.
const BackendDarwin = "darwin"

// darwinReport is Run with its surroundings passed in.
func darwinReport(ctx context.Context, r darwin.Runner, m darwin.Machine, euid int, readFile func(string) ([]byte, error)) *Report {
	rep := &Report{}
	add := func(c Check) { rep.Checks = append(rep.Checks, c) }
	run := func(c darwin.Command) (string, error) {
		out, err := r.Run(ctx, c.Name, c.Args, c.Stdin)
		return string(out), err
	}

	// The record decides who the tool runs as; run refuses without it.
	want := darwin.SandboxUser{Name: m.UserName}
	rec := Check{Name: "sandbox user record", Status: OK, Detail: m.UserFile()}
	if u, err := m.ReadUserFile(); err != nil {
		rec.Status, rec.Detail, rec.Fix = Fail, err.Error(), "sudo aigate setup"
		if !errors.Is(err, darwin.ErrNotSetUp) {
			rec.Fix = ""
		}
	} else {
		want = u
	}
	add(rec)
	out, err := run(darwin.ReadUserCommand(want.Name))
	add(fromDarwin(darwin.CheckSandboxUser(out, err, want), Fail))

	// pfctl -s needs root; without it say so instead of failing.
	if euid != 0 {
		for _, name := range []string{"pf enabled", "pf anchor " + darwin.AnchorName} {
			add(Check{Name: name, Status: Skip, Detail: "reading pf needs root", Fix: "sudo aigate doctor"})
		}
	} else {
		out, _ := run(darwin.DoctorCommands(want.Name)["pf"])
		pf := fromDarwin(darwin.CheckPFEnabled(out), Fail)
		if pf.Status == Fail && pf.Fix != "sudo aigate doctor" {
			// Disabled is fine: every run enables pf with its own
			// reference and releases it at the end.
			pf.Status, pf.Fix = OK, ""
			pf.Detail += "; aigate run enables it for each session"
		}
		add(pf)
		out, err := run(darwin.AnchorRulesCommand())
		anchor := fromDarwin(darwin.CheckAnchorReferenced(out), Fail)
		if err != nil {
			anchor.Detail = "cannot read the pf ruleset: " + err.Error()
		}
		add(anchor)
		if err == nil && anchor.Status == OK {
			// An earlier "pass quick" would win over the anchor.
			add(fromDarwin(darwin.CheckAnchorFirst(out), Warn))
		}
	}
	// Without the line, the anchor call is gone at the next boot.
	if conf, err := readFile(m.PFConf); err != nil {
		add(Check{Name: "pf.conf anchor line", Status: Warn, Detail: err.Error(), Fix: "sudo aigate setup"})
	} else {
		add(fromDarwin(darwin.CheckPFConf(string(conf)), Warn))
	}
	priv := Check{Name: "privileges", Status: OK, Detail: "root"}
	if euid != 0 {
		priv = Check{Name: "privileges", Status: Warn, Detail: "aigate run adds ACL entries and loads pf rules: it needs sudo", Fix: "sudo aigate run -- COMMAND"}
	}
	add(priv)

	if rep.Failed() {
		rep.Summary = "not ready: aigate run would refuse to start; see `aigate doctor`"
		return rep
	}
	rep.Backend, rep.Ready = BackendDarwin, true
	rep.Summary = "ready: ACL entries and the pf anchor " + darwin.AnchorName
	for _, c := range rep.Checks {
		if c.Status == Skip {
			rep.Summary += " (pf not checked: run `sudo aigate doctor`)"
			break
		}
	}
	return rep
}

// fromDarwin converts a macOS check; failed is the status a failure gets.
func fromDarwin(c darwin.Check, failed Status) Check {
	if c.OK {
		return Check{Name: c.Name, Status: OK, Detail: c.Detail}
	}
	return Check{Name: c.Name, Status: failed, Detail: c.Detail, Fix: c.Fix}
}
