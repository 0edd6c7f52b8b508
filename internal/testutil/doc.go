// Package testutil holds helpers shared by aigate's tests: above all the rule
// that a kernel test may skip on a developer machine but must fail in CI.
package testutil
