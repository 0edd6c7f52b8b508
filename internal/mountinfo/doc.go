// Package mountinfo parses /proc/PID/mountinfo: the mounts of a mount
// namespace, with the device, options and filesystem type of each.
package mountinfo
