// Command go_oracle is the reference for vcr-proxy's YAML emitter: it unmarshals
// cassettes into go-vcr v4's structs with gopkg.in/yaml.v3 and marshals them again,
// exactly as go-vcr's Load and Save do (Save prepends "---\n").
//
// Protocol on stdin/stdout, one frame per cassette: a mode byte, an 8-byte big-endian
// length, then the bytes. Mode 'Y': the bytes are a cassette to unmarshal and marshal
// again. Mode 'J': the bytes are the cassette as JSON with every string base64-encoded
// (Go strings need not be UTF-8), marshalled straight to YAML: what Go writes for that
// data, whatever our own YAML says. Each answer is a status byte (0 ok, 1 unmarshal
// error, 2 marshal error), a byte that is 1 when Go reads its own output back to the
// same value, then a length-prefixed payload: the YAML, or the error text.
package main

import (
	"bufio"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
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

// b64 is a string sent base64-encoded in JSON, so that it may hold any bytes.
type b64 string

func (b *b64) UnmarshalText(text []byte) error {
	data, err := base64.StdEncoding.DecodeString(string(text))
	*b = b64(data)
	return err
}

type jsonHeader map[b64][]b64

type jsonRequest struct {
	Proto            b64        `json:"proto"`
	ProtoMajor       int        `json:"proto_major"`
	ProtoMinor       int        `json:"proto_minor"`
	ContentLength    int64      `json:"content_length"`
	TransferEncoding []b64      `json:"transfer_encoding"`
	Trailer          jsonHeader `json:"trailer"`
	Host             b64        `json:"host"`
	RemoteAddr       b64        `json:"remote_addr"`
	RequestURI       b64        `json:"request_uri"`
	Body             b64        `json:"body"`
	Form             jsonHeader `json:"form"`
	Headers          jsonHeader `json:"headers"`
	URL              b64        `json:"url"`
	Method           b64        `json:"method"`
}

type jsonResponse struct {
	Proto            b64        `json:"proto"`
	ProtoMajor       int        `json:"proto_major"`
	ProtoMinor       int        `json:"proto_minor"`
	TransferEncoding []b64      `json:"transfer_encoding"`
	Trailer          jsonHeader `json:"trailer"`
	ContentLength    int64      `json:"content_length"`
	Uncompressed     bool       `json:"uncompressed"`
	Body             b64        `json:"body"`
	Headers          jsonHeader `json:"headers"`
	Status           b64        `json:"status"`
	Code             int        `json:"code"`
	Duration         int64      `json:"duration"`
}

type jsonCassette struct {
	Version      int `json:"version"`
	Interactions []struct {
		ID       int          `json:"id"`
		Request  jsonRequest  `json:"request"`
		Response jsonResponse `json:"response"`
	} `json:"interactions"`
}

func strs(in []b64) []string {
	if in == nil {
		return nil
	}
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = string(s)
	}
	return out
}

func header(in jsonHeader) http.Header {
	if in == nil {
		return nil
	}
	out := http.Header{}
	for k, v := range in {
		out[string(k)] = strs(v)
	}
	return out
}

func fromJSON(in []byte) (*Cassette, error) {
	var j jsonCassette
	if err := json.Unmarshal(in, &j); err != nil {
		return nil, err
	}
	c := &Cassette{Version: j.Version, Interactions: []*Interaction{}}
	for _, i := range j.Interactions {
		q, r := i.Request, i.Response
		c.Interactions = append(c.Interactions, &Interaction{ID: i.ID,
			Request: Request{string(q.Proto), q.ProtoMajor, q.ProtoMinor, q.ContentLength,
				strs(q.TransferEncoding), header(q.Trailer), string(q.Host), string(q.RemoteAddr),
				string(q.RequestURI), string(q.Body), url.Values(header(q.Form)), header(q.Headers),
				string(q.URL), string(q.Method)},
			Response: Response{string(r.Proto), r.ProtoMajor, r.ProtoMinor, strs(r.TransferEncoding),
				header(r.Trailer), r.ContentLength, r.Uncompressed, string(r.Body), header(r.Headers),
				string(r.Status), r.Code, time.Duration(r.Duration)}})
	}
	return c, nil
}

// normalize makes empty maps and slices nil: YAML cannot tell them apart.
func normalize(c *Cassette) {
	header := func(h http.Header) http.Header {
		if len(h) == 0 {
			return nil
		}
		for k, v := range h {
			if len(v) == 0 {
				h[k] = nil
			}
		}
		return h
	}
	list := func(s []string) []string {
		if len(s) == 0 {
			return nil
		}
		return s
	}
	if len(c.Interactions) == 0 {
		c.Interactions = nil
	}
	for _, i := range c.Interactions {
		if i == nil {
			continue
		}
		q, r := &i.Request, &i.Response
		q.TransferEncoding, r.TransferEncoding = list(q.TransferEncoding), list(r.TransferEncoding)
		q.Trailer, r.Trailer = header(q.Trailer), header(r.Trailer)
		q.Headers, r.Headers = header(q.Headers), header(r.Headers)
		q.Form = url.Values(header(http.Header(q.Form)))
	}
}

func roundTrip(mode byte, in []byte) (status byte, stable bool, out []byte) {
	defer func() {
		if r := recover(); r != nil {
			status, stable, out = 2, false, []byte(fmt.Sprint(r))
		}
	}()
	var c Cassette
	if mode == 'J' {
		parsed, err := fromJSON(in)
		if err != nil {
			return 1, false, []byte(err.Error())
		}
		c = *parsed
	} else if err := yaml.Unmarshal(in, &c); err != nil {
		return 1, false, []byte(err.Error())
	}
	data, err := yaml.Marshal(&c)
	if err != nil {
		return 2, false, []byte(err.Error())
	}
	// Stable: Go reads its own output back to the same value (yaml.v3 writes a few
	// strings it cannot read back, such as one that starts with a line break).
	var again Cassette
	if yaml.Unmarshal(data, &again) == nil {
		normalize(&c)
		normalize(&again)
		stable = reflect.DeepEqual(c, again)
	}
	return 0, stable, append([]byte("---\n"), data...)
}

func main() {
	r := bufio.NewReader(os.Stdin)
	w := bufio.NewWriter(os.Stdout)
	var size [8]byte
	for {
		mode, err := r.ReadByte()
		if err != nil {
			return
		}
		if _, err := io.ReadFull(r, size[:]); err != nil {
			return
		}
		in := make([]byte, binary.BigEndian.Uint64(size[:]))
		if _, err := io.ReadFull(r, in); err != nil {
			return
		}
		status, stable, out := roundTrip(mode, in)
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
