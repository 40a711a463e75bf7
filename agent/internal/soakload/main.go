// Command soakload is the soak test's workload: it makes file-open
// syscalls at a target rate, each on a distinct path that does not exist,
// so every call is one kernel event and one distinct receipt entry. It
// prints how many calls it made and the rate it reached.
//
//	soakload -rate 120000 -duration 60s
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	rate := flag.Int("rate", 120000, "target calls per second over all workers (0: as fast as possible)")
	duration := flag.Duration("duration", 60*time.Second, "how long to run")
	workers := flag.Int("workers", 1, "worker threads")
	prefix := flag.String("prefix", "/nonexistent-glasshouse-soak/f", "path prefix")
	flag.Parse()
	if *workers < 1 || *workers > 64 || *rate < 0 || *duration <= 0 {
		fmt.Fprintln(os.Stderr, "soakload: bad flags")
		os.Exit(2)
	}
	var total atomic.Int64
	start := time.Now()
	end := start.Add(*duration)
	var wg sync.WaitGroup
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			runtime.LockOSThread()
			per := float64(*rate) / float64(*workers)
			buf := []byte(*prefix + strconv.Itoa(w) + "-")
			base := len(buf)
			var n int64
			for {
				now := time.Now()
				if now.After(end) {
					break
				}
				// Pace in batches of 1 ms worth of calls.
				batch := 1000
				if per > 0 {
					due := int64(per * now.Sub(start).Seconds())
					if n >= due {
						time.Sleep(time.Millisecond)
						continue
					}
					batch = int(min(due-n, 5000))
				}
				for i := 0; i < batch; i++ {
					buf = strconv.AppendInt(buf[:base], n, 10)
					fd, err := unix.Open(string(buf), unix.O_RDONLY, 0)
					if err == nil {
						unix.Close(fd)
					}
					n++
				}
			}
			total.Add(n)
		}(w)
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	fmt.Printf("calls %d seconds %.2f rate %.0f\n", total.Load(), el, float64(total.Load())/el)
}
