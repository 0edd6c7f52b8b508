//go:build linux

package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/policy"
)

// cpuPeriod is the cpu.max period in microseconds (the kernel's default).
const cpuPeriod = 100000

type limit struct {
	controller string
	file       string
	value      string
	what       string // for messages
}

func limitsFor(l policy.ResourceLimits) []limit {
	var out []limit
	if l.MaxMemory > 0 {
		out = append(out, limit{"memory", "memory.max", strconv.FormatUint(l.MaxMemory, 10), "memory limit"})
	}
	if l.MaxPIDs > 0 {
		out = append(out, limit{"pids", "pids.max", strconv.FormatUint(uint64(l.MaxPIDs), 10), "process limit"})
	}
	if l.MaxCPUPercent > 0 {
		quota := uint64(l.MaxCPUPercent) * cpuPeriod / 100
		out = append(out, limit{"cpu", "cpu.max", fmt.Sprintf("%d %d", quota, cpuPeriod), "CPU limit"})
	}
	return out
}

// applyLimits writes the policy's resource limits into g. Limits whose
// controller the cgroup v2 hierarchy does not offer (on hybrid systems it
// is bound to cgroup v1) make one short warning, or an error when the
// policy requires them (resource_limits.if_unavailable: refuse): the
// sandbox's confinement does not depend on them, but a limit that does not
// hold must never look applied. A controller that exists but refuses the
// limit is an error, because the user asked for a limit that would
// silently not hold.
func applyLimits(root string, g *cgroup.Group, l policy.ResourceLimits) ([]string, error) {
	limits := limitsFor(l)
	if len(limits) == 0 {
		return nil, nil
	}
	available, err := controllers(filepath.Join(root, "cgroup.controllers"))
	if err != nil {
		return nil, err
	}
	var missing, ctls []string
	for _, lim := range limits {
		if !slices.Contains(available, lim.controller) {
			missing = append(missing, lim.file+"="+lim.value)
			ctls = append(ctls, lim.controller)
		}
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("resource limits (%s) cannot apply: cgroup v2 has no %s controller here (bound to cgroup v1)",
			strings.Join(missing, ", "), strings.Join(ctls, ", "))
		if l.Required {
			return nil, fmt.Errorf("%s; resource_limits.if_unavailable is refuse", msg)
		}
		return []string{msg + "; running without them (resource_limits.if_unavailable: refuse to refuse instead)"}, nil
	}
	for _, lim := range limits {
		if err := enablePath(root, g.Path, lim.controller); err != nil {
			return nil, fmt.Errorf("apply %s: %w", lim.what, err)
		}
		f := filepath.Join(g.Path, lim.file)
		if err := os.WriteFile(f, []byte(lim.value), 0); err != nil {
			return nil, fmt.Errorf("apply %s: write %q to %s: %w", lim.what, lim.value, f, err)
		}
	}
	return nil, nil
}

// enablePath enables controller in cgroup.subtree_control of every ancestor
// of path from root down, which is what makes the controller's files appear
// in path.
func enablePath(root, path, controller string) error {
	rel, err := filepath.Rel(root, filepath.Dir(path))
	if err != nil {
		return err
	}
	dir := root
	parts := []string{"."}
	if rel != "." {
		parts = append(parts, strings.Split(rel, "/")...)
	}
	for _, p := range parts {
		dir = filepath.Join(dir, p)
		ctl := filepath.Join(dir, "cgroup.subtree_control")
		enabled, err := controllers(ctl)
		if err != nil {
			return err
		}
		if slices.Contains(enabled, controller) {
			continue
		}
		if err := os.WriteFile(ctl, []byte("+"+controller), 0); err != nil {
			return fmt.Errorf("enable the %s controller in %s: %w", controller, ctl, err)
		}
	}
	return nil
}

func controllers(file string) ([]string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read cgroup controllers: %w", err)
	}
	return strings.Fields(string(data)), nil
}
