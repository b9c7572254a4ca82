// A producer built on fluent-logger-golang (Debian's golang-github-fluent-fluent-logger-golang-dev),
// for logd's end-to-end tests: the Go Fluent client as Docker's driver and Go services use it.
//
// Modes:
//
//	stream  posts {"msg": "seq N", "seq": N} for N = 0, 1, ... without pause until stdin closes
//	typed   posts one event whose fields hold a time.Time (msgpack ext 5) and an ext 7 value
//	quiet   posts "line 0", "line 1", "line 2", waiting -quiet-ms between them
//	container  posts what Docker's fluentd driver sends for a container's output:
//	        {"container_id", "container_name": "/NAME", "source": "stdout"|"stderr",
//	        "log": "line N"}, N from -from, every third line from stderr; -lines of them,
//	        or until stdin closes when -lines is 0, waiting -pause-us between them; with
//	        -bare the log is N alone
//
// Every Post is synchronous (with -ack it returns once the daemon acknowledged). At the end
// it prints {"sent": N} on stdout; a Post that fails prints the error on stderr, exit 1.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/fluent/fluent-logger-golang/fluent"
)

// blob is an application's own msgpack extension (type 7), as msgp.Extension sends it.
type blob []byte

func (b *blob) ExtensionType() int8              { return 7 }
func (b *blob) Len() int                         { return len(*b) }
func (b *blob) MarshalBinaryTo(dst []byte) error { copy(dst, *b); return nil }
func (b *blob) UnmarshalBinary(src []byte) error { *b = append((*b)[:0], src...); return nil }

// TypedTime is the time.Time the typed mode sends; the tests expect it back in ISO 8601.
var TypedTime = time.Date(2025, 11, 5, 14, 30, 52, 123456789, time.UTC)

func main() {
	network := flag.String("network", "unix", "unix or tcp")
	address := flag.String("address", "", "socket path, or host for tcp")
	port := flag.Int("port", 24224, "tcp port")
	ack := flag.Bool("ack", false, "RequestAck: wait for the daemon's ack of every Post")
	mode := flag.String("mode", "stream", "stream, typed or quiet")
	tag := flag.String("tag", "gosend", "Fluent tag (logd takes the app from it)")
	quietMs := flag.Int("quiet-ms", 1000, "quiet mode: pause between posts")
	containerID := flag.String("container-id", "", "container mode: the container's id")
	containerName := flag.String("container-name", "", "container mode: its name")
	lines := flag.Int("lines", 0, "container mode: how many lines (0: until stdin closes)")
	pauseUs := flag.Int("pause-us", 0, "container mode: pause between lines")
	subSecond := flag.Bool("sub-second", false, "SubSecondPrecision (EventTime)")
	async := flag.Bool("async", false, "Async: buffer and send in the background")
	from := flag.Int("from", 0, "container mode: the first line's number")
	bare := flag.Bool("bare", false, "container mode: the number alone, as seq prints it")
	flag.Parse()

	config := fluent.Config{
		FluentNetwork:      *network,
		RequestAck:         *ack,
		RetryWait:          20,
		MaxRetry:           200,
		MaxRetryWait:       200,
		Timeout:            5 * time.Second,
		SubSecondPrecision: *subSecond,
		Async:              *async,
	}
	if *network == "unix" {
		config.FluentSocketPath = *address
	} else {
		config.FluentHost = *address
		config.FluentPort = *port
	}
	logger, err := fluent.New(config)
	if err != nil {
		fail(err)
	}
	sent := 0
	post := func(record map[string]interface{}) {
		if err := logger.Post(*tag, record); err != nil {
			fail(err)
		}
		sent++
	}
	switch *mode {
	case "stream":
		var stop atomic.Bool
		go func() {
			_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
			stop.Store(true)
		}()
		for seq := 0; !stop.Load(); seq++ {
			post(map[string]interface{}{"msg": fmt.Sprintf("seq %d", seq), "seq": seq})
		}
	case "typed":
		custom := blob{0x00, 0xff, 0x10, 'g', 'o'}
		post(map[string]interface{}{
			"msg":        "typed values",
			"session_id": "typed-session",
			"event_type": "go:typed",
			"when":       TypedTime,
			"custom":     &custom,
			"kv":         map[string]interface{}{"when": TypedTime, "custom": &custom},
		})
	case "quiet":
		for i := 0; i < 3; i++ {
			if i > 0 {
				time.Sleep(time.Duration(*quietMs) * time.Millisecond)
			}
			post(map[string]interface{}{"msg": fmt.Sprintf("line %d", i)})
		}
	case "container":
		var stop atomic.Bool
		if *lines == 0 {
			go func() {
				_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
				stop.Store(true)
			}()
		}
		for n := 0; (*lines == 0 && !stop.Load()) || n < *lines; n++ {
			source := "stdout"
			if (*from+n)%3 == 2 {
				source = "stderr"
			}
			post(map[string]interface{}{
				"container_id":   *containerID,
				"container_name": "/" + *containerName,
				"source":         source,
				"log":            text(*bare, *from+n),
			})
			if *pauseUs > 0 {
				time.Sleep(time.Duration(*pauseUs) * time.Microsecond)
			}
		}
	default:
		fail(fmt.Errorf("unknown mode %q", *mode))
	}
	if err := logger.Close(); err != nil {
		fail(err)
	}
	out, _ := json.Marshal(map[string]int{"sent": sent})
	fmt.Println(string(out))
}

func text(bare bool, n int) string {
	if bare {
		return fmt.Sprint(n)
	}
	return fmt.Sprintf("line %d", n)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "sender:", err)
	os.Exit(1)
}
