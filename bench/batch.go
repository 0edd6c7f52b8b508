package bench

import (
	"fmt"
	"time"
)

// BatchSize is how many operations Batched times together: at a few
// microseconds each a batch lasts well under a scheduler time slice, so
// most batches run unpreempted, while the clock read costs little against it.
const BatchSize = 64

// Batched performs op n times in batches of BatchSize and returns the
// median batch's cost in ns per operation. On a loaded machine a batch
// during which the process was preempted is far slower than the others;
// the median ignores those without favouring the luckiest batch as a
// minimum would.
func Batched(n int, op func() error) (float64, error) {
	if n < 1 {
		return 0, fmt.Errorf("batched: %d operations, need at least 1", n)
	}
	var per []float64
	for done := 0; done < n; {
		k := min(BatchSize, n-done)
		start := time.Now()
		for range k {
			if err := op(); err != nil {
				return 0, err
			}
		}
		per = append(per, float64(time.Since(start).Nanoseconds())/float64(k))
		done += k
	}
	return Summarize(per).Median, nil
}
