//go:build !unix

package darwin

import "io/fs"

// ownerUID is unknown where there are no Unix owners; CheckDir then refuses.
func ownerUID(fs.FileInfo) (uint32, bool) { return 0, false }
