// Package testcgroup holds the cgroup helpers tests share: a parent cgroup
// per test, removed with everything in it, and processes started inside a
// cgroup. It is apart from package testutil because package cgroup's own
// tests use testutil, and testutil must not import cgroup.
package testcgroup
