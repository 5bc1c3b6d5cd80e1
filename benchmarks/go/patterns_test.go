// Package cspbench holds the Go versions of the csp benchmark patterns
// (benchmarks/patterns.py), as ordinary `go test -bench` benchmarks.
//
// `python -m benchmarks --go` runs them (with -cpu 1) and shows the result as an
// absolute reference column; run them by hand with
//
//	cd benchmarks/go && go test -run '^$' -bench . -cpu 1
//
// One op is what it is in the Python suite: a round trip, an item moved, a lock
// operation, a goroutine spawned and joined. Every benchmark checks its item count and
// checksum, as the Python ones do.
package cspbench

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

const (
	capMulti     = 64 // fan-in, worker pool, pipeline, end-of-stream
	fan          = 8  // producers, workers, contending goroutines
	stages       = 4
	selectWays   = 4
	selectCap    = 1
	eosConsumers = 4
	semSlots     = 4
)

func tri(n int) int64 { return int64(n) * int64(n-1) / 2 }

func check(b *testing.B, gotCount, wantCount int, gotSum, wantSum int64) {
	b.Helper()
	if gotCount != wantCount || gotSum != wantSum {
		b.Fatalf("expected (count, checksum) = (%d, %d), got (%d, %d)",
			wantCount, wantSum, gotCount, gotSum)
	}
}

func BenchmarkPingPong(b *testing.B) {
	n := b.N
	ping, pong := make(chan int), make(chan int)
	done := make(chan struct{})
	go func() {
		for i := 0; i < n; i++ {
			v := <-ping
			pong <- v + 1
		}
		close(done)
	}()
	var total int64
	for i := 0; i < n; i++ {
		ping <- i
		total += int64(<-pong)
	}
	<-done
	check(b, n, n, total, tri(n)+int64(n))
}

func BenchmarkSPSC(b *testing.B) {
	for _, c := range []int{0, 1, 64, 1024} {
		c := c
		b.Run(fmt.Sprintf("cap=%d", c), func(b *testing.B) {
			n := b.N
			ch := make(chan int, c)
			go func() {
				for i := 0; i < n; i++ {
					ch <- i
				}
			}()
			var total int64
			for i := 0; i < n; i++ {
				total += int64(<-ch)
			}
			check(b, n+len(ch), n, total, tri(n))
		})
	}
}

func BenchmarkFanIn(b *testing.B) {
	n := b.N
	ch := make(chan int, capMulti)
	for p := 0; p < fan; p++ {
		go func(p int) {
			for i := p; i < n; i += fan {
				ch <- i
			}
		}(p)
	}
	var total int64
	for i := 0; i < n; i++ {
		total += int64(<-ch)
	}
	check(b, n+len(ch), n, total, tri(n))
}

func BenchmarkWorkerPool(b *testing.B) {
	n := b.N
	jobs, results := make(chan int, capMulti), make(chan int, capMulti)
	go func() {
		for i := 0; i < n; i++ {
			jobs <- i
		}
		close(jobs)
	}()
	var wg sync.WaitGroup
	wg.Add(fan)
	for w := 0; w < fan; w++ {
		go func() {
			defer wg.Done()
			for j := range jobs {
				results <- 2*j + 1
			}
		}()
	}
	var total int64
	for i := 0; i < n; i++ {
		total += int64(<-results)
	}
	wg.Wait()
	check(b, n+len(results), n, total, int64(n)*int64(n))
}

func BenchmarkPipeline(b *testing.B) {
	n := b.N
	chans := make([]chan int, stages+1)
	for k := range chans {
		chans[k] = make(chan int, capMulti)
	}
	go func() {
		for i := 0; i < n; i++ {
			chans[0] <- i
		}
	}()
	for k := 0; k < stages; k++ {
		go func(in <-chan int, out chan<- int) {
			for i := 0; i < n; i++ {
				out <- <-in + 1
			}
		}(chans[k], chans[k+1])
	}
	var total int64
	for i := 0; i < n; i++ {
		total += int64(<-chans[stages])
	}
	check(b, n, n, total, tri(n)+int64(stages*n))
}

func BenchmarkSelect4(b *testing.B) {
	n := b.N
	var cs [selectWays]chan int
	for k := range cs {
		cs[k] = make(chan int, selectCap)
		go func(k int) {
			for i := k; i < n; i += selectWays {
				cs[k] <- i
			}
		}(k)
	}
	var total int64
	for i := 0; i < n; i++ {
		var v int
		select {
		case v = <-cs[0]:
		case v = <-cs[1]:
		case v = <-cs[2]:
		case v = <-cs[3]:
		}
		total += int64(v)
	}
	check(b, n, n, total, tri(n))
}

func BenchmarkEndOfStream(b *testing.B) {
	n := b.N
	ch := make(chan int, capMulti)
	type sums struct {
		count int
		sum   int64
	}
	out := make(chan sums, eosConsumers)
	go func() {
		for i := 0; i < n; i++ {
			ch <- i
		}
		close(ch)
	}()
	for c := 0; c < eosConsumers; c++ {
		go func() {
			var s sums
			for v := range ch {
				s.count++
				s.sum += int64(v)
			}
			out <- s
		}()
	}
	var total sums
	for c := 0; c < eosConsumers; c++ {
		s := <-out
		total.count += s.count
		total.sum += s.sum
	}
	check(b, total.count, n, total.sum, tri(n))
}

func BenchmarkMutex(b *testing.B) {
	b.Run("uncontended", func(b *testing.B) {
		n := b.N
		var mu sync.Mutex
		count := 0
		for i := 0; i < n; i++ {
			mu.Lock()
			count++
			mu.Unlock()
		}
		check(b, n, n, int64(count), int64(n))
	})
	b.Run(fmt.Sprintf("contended%d", fan), func(b *testing.B) {
		n := b.N
		var mu sync.Mutex
		var wg sync.WaitGroup
		counter := 0
		wg.Add(fan)
		for k := 0; k < fan; k++ {
			go func(k int) {
				defer wg.Done()
				for i := k; i < n; i += fan {
					mu.Lock()
					v := counter
					runtime.Gosched() // yield inside the critical section, as the Python one does
					counter = v + 1
					mu.Unlock()
				}
			}(k)
		}
		wg.Wait()
		check(b, n, n, int64(counter), int64(n))
	})
}

// BenchmarkSemaphore uses Go's idiomatic counting semaphore, a buffered channel
// (golang.org/x/sync/semaphore would be an external dependency).
func BenchmarkSemaphore(b *testing.B) {
	n := b.N
	sem := make(chan struct{}, semSlots)
	var wg sync.WaitGroup
	var acquired, inside, peak int64
	wg.Add(fan)
	for k := 0; k < fan; k++ {
		go func(k int) {
			defer wg.Done()
			for i := k; i < n; i += fan {
				sem <- struct{}{}
				atomic.AddInt64(&acquired, 1)
				now := atomic.AddInt64(&inside, 1)
				for {
					p := atomic.LoadInt64(&peak)
					if now <= p || atomic.CompareAndSwapInt64(&peak, p, now) {
						break
					}
				}
				runtime.Gosched()
				atomic.AddInt64(&inside, -1)
				<-sem
			}
		}(k)
	}
	wg.Wait()
	want := int64(semSlots)
	if n < semSlots {
		want = int64(n)
	}
	if acquired != int64(n) || peak > want {
		b.Fatalf("expected %d acquisitions and at most %d holders, got %d and %d",
			n, want, acquired, peak)
	}
}

func BenchmarkSpawnJoin(b *testing.B) {
	n := b.N
	var wg sync.WaitGroup
	var count, sum int64
	wg.Add(n)
	for i := 0; i < n; i++ {
		go func(i int) {
			atomic.AddInt64(&count, 1)
			atomic.AddInt64(&sum, int64(i))
			wg.Done()
		}(i)
	}
	wg.Wait()
	check(b, int(count), n, sum, tri(n))
}

// Broadcast: Go has no broadcast channel; the fan-out is written by hand, one channel
// per subscriber (subs=k and chans=k are the same program in Go).
func broadcast(b *testing.B, k int) {
	n := b.N
	chans := make([]chan int, k)
	sums := make([]int64, k)
	var wg sync.WaitGroup
	wg.Add(k)
	for j := range chans {
		chans[j] = make(chan int, capMulti)
		go func(j int) {
			defer wg.Done()
			for v := range chans[j] {
				sums[j] += int64(v)
			}
		}(j)
	}
	for i := 0; i < n; i++ {
		for _, ch := range chans {
			ch <- i
		}
	}
	for _, ch := range chans {
		close(ch)
	}
	wg.Wait()
	check(b, n, n, sums[0], tri(n))
}

func BenchmarkBroadcast(b *testing.B) {
	for _, k := range []int{1, fan} {
		k := k
		b.Run(fmt.Sprintf("subs=%d", k), func(b *testing.B) { broadcast(b, k) })
	}
	b.Run(fmt.Sprintf("chans=%d", fan), func(b *testing.B) { broadcast(b, fan) })
}
