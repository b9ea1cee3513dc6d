package main

import (
	"fmt"
	"strconv"
	"strings"
)

// A template is text with placeholders filled per request:
//
//	{{id}}    the run id, "-" and the request's sequence number: unique per
//	          request and per run (unique_id, order_id, transaction keys)
//	{{seq}}   the request's sequence number, from 1
//	{{runid}} the run id alone (-run-id, or random)
//
// Anything else between {{ and }} is an error, so that a typo does not send
// the same literal body a million times.
type template struct {
	parts []tpart
	// static is set when the template has no placeholder: render then
	// returns the text without copying.
	static bool
	text   string
}

type tpart struct {
	lit  string
	kind int // 0 literal, 1 id, 2 seq, 3 runid
}

func parseTemplate(s string) (*template, error) {
	t := &template{text: s}
	rest := s
	for {
		i := strings.Index(rest, "{{")
		if i < 0 {
			if rest != "" {
				t.parts = append(t.parts, tpart{lit: rest})
			}
			break
		}
		if i > 0 {
			t.parts = append(t.parts, tpart{lit: rest[:i]})
		}
		j := strings.Index(rest[i:], "}}")
		if j < 0 {
			return nil, fmt.Errorf("template %q: unclosed {{", s)
		}
		name := strings.TrimSpace(rest[i+2 : i+j])
		switch name {
		case "id":
			t.parts = append(t.parts, tpart{kind: 1})
		case "seq":
			t.parts = append(t.parts, tpart{kind: 2})
		case "runid":
			t.parts = append(t.parts, tpart{kind: 3})
		default:
			return nil, fmt.Errorf("template %q: unknown placeholder {{%s}} (want id, seq or runid)", s, name)
		}
		rest = rest[i+j+2:]
	}
	t.static = len(t.parts) == 0 || (len(t.parts) == 1 && t.parts[0].kind == 0)
	return t, nil
}

// appendTo appends the text for request seq of run runID to dst.
func (t *template) appendTo(dst []byte, runID string, seq uint64) []byte {
	if t.static {
		return append(dst, t.text...)
	}
	for _, p := range t.parts {
		switch p.kind {
		case 0:
			dst = append(dst, p.lit...)
		case 1:
			dst = append(dst, runID...)
			dst = append(dst, '-')
			dst = strconv.AppendUint(dst, seq, 10)
		case 2:
			dst = strconv.AppendUint(dst, seq, 10)
		case 3:
			dst = append(dst, runID...)
		}
	}
	return dst
}
