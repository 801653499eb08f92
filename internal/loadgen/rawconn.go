package loadgen

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
)

// rawConn is a minimal HTTP/1.1 keep-alive client for posting: the load
// generator shares the machine with the server, so it spends as little CPU
// per request as it can (about a third of net/http's client).
type rawConn struct {
	addr string
	c    net.Conn
	r    *bufio.Reader
	head []byte
}

func (rc *rawConn) post(path string, body []byte) (int, error) {
	if rc.c == nil {
		c, err := net.Dial("tcp", rc.addr)
		if err != nil {
			return 0, err
		}
		rc.c, rc.r = c, bufio.NewReaderSize(c, 16<<10)
	}
	rc.head = fmt.Appendf(rc.head[:0], "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", path, rc.addr, len(body))
	bufs := net.Buffers{rc.head, body}
	if _, err := bufs.WriteTo(rc.c); err != nil {
		rc.close()
		return 0, err
	}
	resp, err := http.ReadResponse(rc.r, nil)
	if err != nil {
		rc.close()
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	if err = errors.Join(err, resp.Body.Close()); err != nil || resp.Close {
		rc.close()
	}
	return resp.StatusCode, err
}

func (rc *rawConn) close() {
	if rc.c != nil {
		rc.c.Close()
		rc.c = nil
	}
}
