package bench

import (
	"fmt"
	"time"
)

// BatchTarget is how long Batched aims for one batch to last: well under a
// scheduler time slice, so that most batches run unpreempted (on the host,
// and in an emulated guest whose vCPU threads the host deschedules), yet
// long enough that the two clock reads around a batch cost little.
const BatchTarget = 200 * time.Microsecond

// maxBatch bounds a batch of very cheap operations.
const maxBatch = 1024

// Batched performs op n times in batches and returns the median batch's
// cost in ns per operation. The first batch is one operation; each next one
// is sized from the cheapest operation seen so far to last about
// BatchTarget. On a loaded machine a batch during which the process was
// preempted is far slower than the others; the median ignores those
// without favouring the luckiest batch as a minimum would.
func Batched(n int, op func() error) (float64, error) {
	if n < 1 {
		return 0, fmt.Errorf("batched: %d operations, need at least 1", n)
	}
	var per []float64
	size, cheapest := 1, 0.0
	for done := 0; done < n; {
		k := min(size, n-done)
		start := time.Now()
		for range k {
			if err := op(); err != nil {
				return 0, err
			}
		}
		ns := float64(time.Since(start).Nanoseconds()) / float64(k)
		per = append(per, ns)
		done += k
		if ns > 0 && (cheapest == 0 || ns < cheapest) {
			cheapest = ns
			size = max(1, min(maxBatch, int(float64(BatchTarget.Nanoseconds())/cheapest)))
		}
	}
	return Summarize(per).Median, nil
}
