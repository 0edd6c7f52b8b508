package testutil

import (
	"fmt"
	"os"
	"strings"
)

// HelperOps makes a test binary its own helper process: when env is set,
// it runs the operations it lists (";"-separated, each split into fields)
// with op, prints one result line each and exits. Call it from an init
// function, so that the helper runs before any test.
func HelperOps(env string, op func(args []string) string) {
	ops, ok := os.LookupEnv(env)
	if !ok {
		return
	}
	for _, o := range strings.Split(ops, ";") {
		fmt.Println(op(strings.Fields(o)))
	}
	os.Exit(0)
}
