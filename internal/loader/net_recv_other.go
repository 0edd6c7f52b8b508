//go:build linux && !386 && !amd64 && !arm64

package loader

import (
	"fmt"
	"runtime"

	"github.com/cilium/ebpf"
)

// The receive check's object is built for amd64 and arm64 only (its kprobe
// reads the architecture's registers); elsewhere it reports why not.
type netRecvObjects struct {
	AigateFileReceive *ebpf.Program
}

func (o *netRecvObjects) Close() error { return nil }

// _NetRecvBytes is the object's bytes, none here (kept sets hash it).
var _NetRecvBytes []byte

func loadNetRecv() (*ebpf.CollectionSpec, error) {
	return nil, fmt.Errorf("%w: no object built for %s", ErrNoReceiveCheck, runtime.GOARCH)
}

func loadNetRecvObjects(any, *ebpf.CollectionOptions) error {
	_, err := loadNetRecv()
	return err
}
