//go:build linux

package escape

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/e2e"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// TestEscapeEnvSecrets: the tokens of the user's shell do not reach the
// tool (deny_env, applied by aigate run before the command starts), while
// the tool's own key (allow_env) does. No kernel mechanism is involved, so
// there is no deny event: `aigate status` names what is removed instead.
func TestEscapeEnvSecrets(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		env := []string{"GH_TOKEN=ghp_escape", "AWS_SECRET_ACCESS_KEY=aws_escape", "MY_DB_PASSWORD=pw_escape",
			"SLACK_BOT_TOKEN=xoxb_escape", "ANTHROPIC_API_KEY=sk-ant-kept", "AIGATE_PLAIN=plain"}
		cmd := b.asUser(exec.Command(machine.bin, "run", "--", "sh", "-c", "env; cat /proc/self/environ | tr '\\0' '\\n'"))
		cmd.Env = append(cmd.Env, env...)
		var stdout, stderr testutil.SyncBuffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		code, err := e2e.ExitCode(e2e.RunBounded(cmd, runLimit))
		if err != nil || code != 0 {
			t.Fatalf("aigate run: exit %d %v\n%s", code, err, stderr.String())
		}
		out := stdout.String()
		for _, secret := range []string{"ghp_escape", "aws_escape", "pw_escape", "xoxb_escape"} {
			if strings.Contains(out, secret) {
				t.Errorf("%s reached the tool:\n%s", secret, out)
			}
		}
		if !strings.Contains(out, "ANTHROPIC_API_KEY=sk-ant-kept") || !strings.Contains(out, "AIGATE_PLAIN=plain") {
			t.Errorf("allowed variables are missing (control):\n%s", out)
		}

		st := b.asUser(exec.Command(machine.bin, "status"))
		st.Env = append(st.Env, env...)
		so, _ := st.CombinedOutput()
		if !strings.Contains(string(so), "GH_TOKEN") || !strings.Contains(string(so), "aigate run removes") {
			t.Errorf("status does not say what is removed:\n%s", so)
		}
	})
}
