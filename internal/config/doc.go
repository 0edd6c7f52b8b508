// Package config finds, loads, trusts and edits aigate's configuration files:
// the invoking user's global ~/.aigate/config.yaml and a project's
// .aigate.yaml. Parsing and merging belong to package policy; this package
// deals with where the files are, whether a project file is trusted, and
// changing them without losing the user's comments or layout.
package config
