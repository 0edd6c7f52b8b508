// Package cpio writes and reads the "newc" (SVR4, no CRC) cpio format that the
// Linux kernel unpacks as an initramfs.
//
// The writer exists so vmtest can create device nodes and set owners without
// running as root or depending on the host's cpio tool; the reader exists so
// the writer can be tested.
package cpio
