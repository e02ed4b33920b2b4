// Command go_oracle is the reference for vcr-proxy's YAML emitter: it unmarshals
// cassettes into go-vcr v4's structs with gopkg.in/yaml.v3 and marshals them again,
// exactly as go-vcr's Load and Save do (Save prepends "---\n").
//
// Protocol on stdin/stdout, one frame per cassette: an 8-byte big-endian length,
// then the bytes. Each answer is a status byte (0 ok, 1 unmarshal error, 2 marshal
// error), a byte that is 1 when Go reads its own output back to the same value,
// then a length-prefixed payload: the marshalled cassette, or the error text.
package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"time"

	"gopkg.in/yaml.v3"
)

type Request struct {
	Proto            string      `yaml:"proto"`
	ProtoMajor       int         `yaml:"proto_major"`
	ProtoMinor       int         `yaml:"proto_minor"`
	ContentLength    int64       `yaml:"content_length"`
	TransferEncoding []string    `yaml:"transfer_encoding,omitempty"`
	Trailer          http.Header `yaml:"trailer,omitempty"`
	Host             string      `yaml:"host"`
	RemoteAddr       string      `yaml:"remote_addr,omitempty"`
	RequestURI       string      `yaml:"request_uri,omitempty"`
	Body             string      `yaml:"body,omitempty"`
	Form             url.Values  `yaml:"form,omitempty"`
	Headers          http.Header `yaml:"headers,omitempty"`
	URL              string      `yaml:"url"`
	Method           string      `yaml:"method"`
}

type Response struct {
	Proto            string        `yaml:"proto"`
	ProtoMajor       int           `yaml:"proto_major"`
	ProtoMinor       int           `yaml:"proto_minor"`
	TransferEncoding []string      `yaml:"transfer_encoding,omitempty"`
	Trailer          http.Header   `yaml:"trailer,omitempty"`
	ContentLength    int64         `yaml:"content_length"`
	Uncompressed     bool          `yaml:"uncompressed,omitempty"`
	Body             string        `yaml:"body"`
	Headers          http.Header   `yaml:"headers"`
	Status           string        `yaml:"status"`
	Code             int           `yaml:"code"`
	Duration         time.Duration `yaml:"duration"`
}

type Interaction struct {
	ID       int      `yaml:"id"`
	Request  Request  `yaml:"request"`
	Response Response `yaml:"response"`
}

type Cassette struct {
	Version      int            `yaml:"version"`
	Interactions []*Interaction `yaml:"interactions"`
}

func roundTrip(in []byte) (status byte, stable bool, out []byte) {
	defer func() {
		if r := recover(); r != nil {
			status, stable, out = 2, false, []byte(fmt.Sprint(r))
		}
	}()
	var c Cassette
	if err := yaml.Unmarshal(in, &c); err != nil {
		return 1, false, []byte(err.Error())
	}
	data, err := yaml.Marshal(&c)
	if err != nil {
		return 2, false, []byte(err.Error())
	}
	var again Cassette
	stable = yaml.Unmarshal(data, &again) == nil && reflect.DeepEqual(c, again)
	return 0, stable, append([]byte("---\n"), data...)
}

func main() {
	r := bufio.NewReader(os.Stdin)
	w := bufio.NewWriter(os.Stdout)
	var size [8]byte
	for {
		if _, err := io.ReadFull(r, size[:]); err != nil {
			return
		}
		in := make([]byte, binary.BigEndian.Uint64(size[:]))
		if _, err := io.ReadFull(r, in); err != nil {
			return
		}
		status, stable, out := roundTrip(in)
		flag := byte(0)
		if stable {
			flag = 1
		}
		binary.BigEndian.PutUint64(size[:], uint64(len(out)))
		w.Write([]byte{status, flag})
		w.Write(size[:])
		w.Write(out)
		w.Flush()
	}
}
