// Command streamgen measures how many timed streams a server holds: N clients, each opening a
// new TLS connection per stream (as a load test's virtual users do), read SSE streams whose
// events are due at known times; it prints the p99 of each event's lateness (arrival minus
// due time, from the request's start), in milliseconds.
//
// Usage:
//
//	streamgen load PROXY_URL|direct CA_FILE URL CLIENTS SECONDS FIRST_MS GAP_MS EVENTS
//	streamgen serve CERT KEY FIRST_MS GAP_MS EVENTS   (the reference: prints its address)
package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"
)

func main() {
	switch os.Args[1] {
	case "serve":
		serve(os.Args[2], os.Args[3], ms(os.Args[4]), ms(os.Args[5]), atoi(os.Args[6]))
	case "load":
		load(os.Args[2], os.Args[3], os.Args[4], atoi(os.Args[5]), seconds(os.Args[6]),
			ms(os.Args[7]), ms(os.Args[8]), atoi(os.Args[9]))
	}
}

func serve(cert, key string, first, gap time.Duration, events int) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	fmt.Printf("https://%s\n", listener.Addr())
	os.Stdout.Sync()
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		w.Header().Set("Content-Type", "text/event-stream")
		time.Sleep(first)
		w.WriteHeader(200)
		flusher := w.(http.Flusher)
		for n := 0; n < events; n++ {
			time.Sleep(time.Until(start.Add(first + time.Duration(n)*gap)))
			fmt.Fprintf(w, "data: {\"n\": %d}\n\n", n)
			flusher.Flush()
		}
	})
	server := &http.Server{Handler: handler, TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}}
	check(server.ServeTLS(listener, cert, key))
}

func load(proxy, caFile, target string, clients int, duration time.Duration, first, gap time.Duration, events int) {
	pem, err := os.ReadFile(caFile)
	check(err)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	transport := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, DisableKeepAlives: true,
		ForceAttemptHTTP2: false}
	if proxy != "direct" {
		proxyURL, _ := url.Parse(proxy)
		transport.Proxy = http.ProxyURL(proxyURL)
	}
	client := &http.Client{Transport: transport, Timeout: 60 * time.Second}
	var mutex sync.Mutex
	var late []float64
	failures := 0
	deadline := time.Now().Add(duration)
	var group sync.WaitGroup
	for c := 0; c < clients; c++ {
		group.Add(1)
		go func(c int) {
			defer group.Done()
			// Spread the clients' starts over one stream's length, as a ramped load test does.
			time.Sleep(time.Duration(c) * (first + time.Duration(events)*gap) / time.Duration(clients))
			for time.Now().Before(deadline) {
				mine, ok := stream(client, target, first, gap, events)
				mutex.Lock()
				if ok {
					late = append(late, mine...)
				} else {
					failures++
				}
				mutex.Unlock()
			}
		}(c)
	}
	group.Wait()
	sort.Float64s(late)
	if len(late) == 0 {
		fmt.Println("nan 0", failures)
		return
	}
	fmt.Printf("%.2f %d %d\n", late[int(float64(len(late))*0.99)], len(late), failures)
}

func stream(client *http.Client, target string, first, gap time.Duration, events int) ([]float64, bool) {
	start := time.Now()
	response, err := client.Post(target, "application/json", bytes.NewReader([]byte(`{"stream": true}`)))
	if err != nil {
		return nil, false
	}
	defer response.Body.Close()
	if response.StatusCode != 200 {
		return nil, false
	}
	reader := bufio.NewReader(response.Body)
	var late []float64
	n := 0
	for {
		line, err := reader.ReadBytes('\n')
		if err != nil {
			break
		}
		if bytes.HasPrefix(line, []byte("data:")) {
			due := start.Add(first + time.Duration(n)*gap)
			late = append(late, float64(time.Since(due).Microseconds())/1000)
			n++
		}
	}
	return late, n == events
}

func ms(text string) time.Duration  { return time.Duration(atoi(text)) * time.Millisecond }
func seconds(text string) time.Duration {
	value, _ := strconv.ParseFloat(text, 64)
	return time.Duration(value * float64(time.Second))
}
func atoi(text string) int { value, err := strconv.Atoi(text); check(err); return value }
func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
