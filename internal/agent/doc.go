// Package agent is aigate's long-running privileged daemon: it owns the
// enforcement backend, creates and removes the sandboxes that users ask for
// over the unix socket of package api, decides with the kernel's peer
// credentials who may see and end which sandbox, and fans the backend's
// events out to the sessions and watchers allowed to read them.
package agent
