// Command loadgen measures requests per second through an HTTPS proxy: N keep-alive
// connections, each sending GET URL and reading the whole response, for a fixed time.
// Go, not Python, so that the proxy under test is the bottleneck and not the client.
//
// Usage: loadgen PROXY_URL CA_FILE URL CONNECTIONS SECONDS EXPECTED_BODY_LENGTH
// Prints the rate (requests per second).
package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	proxy, _ := url.Parse(os.Args[1])
	pem, err := os.ReadFile(os.Args[2])
	check(err)
	target := os.Args[3]
	connections, _ := strconv.Atoi(os.Args[4])
	seconds, _ := strconv.ParseFloat(os.Args[5], 64)
	expected, _ := strconv.Atoi(os.Args[6])
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	client := &http.Client{Transport: &http.Transport{
		Proxy:               http.ProxyURL(proxy),
		TLSClientConfig:     &tls.Config{RootCAs: roots},
		MaxIdleConnsPerHost: connections,
		MaxConnsPerHost:     connections,
		ForceAttemptHTTP2:   false,
	}, Timeout: 30 * time.Second}
	get := func() {
		response, err := client.Get(target)
		check(err)
		body, err := io.ReadAll(response.Body)
		check(err)
		response.Body.Close()
		if response.StatusCode != 200 || len(body) != expected {
			check(fmt.Errorf("unexpected answer %d: %.200s", response.StatusCode, body))
		}
	}
	var warm sync.WaitGroup
	for i := 0; i < connections; i++ {
		warm.Add(1)
		go func() { defer warm.Done(); get(); get() }()
	}
	warm.Wait()
	var count int64
	deadline := time.Now().Add(time.Duration(seconds * float64(time.Second)))
	started := time.Now()
	var wait sync.WaitGroup
	for i := 0; i < connections; i++ {
		wait.Add(1)
		go func() {
			defer wait.Done()
			for time.Now().Before(deadline) {
				get()
				atomic.AddInt64(&count, 1)
			}
		}()
	}
	wait.Wait()
	fmt.Printf("%.1f\n", float64(count)/time.Since(started).Seconds())
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}
