package layout

import (
	"bytes"
	"encoding/json"
)

// jsonScanner reads the JSON of the files heron writes in one pass,
// without reflection and without allocating for what it skips or
// compares: the server decodes a repository file on every cache miss.
// It is strict and partial: any input it is not sure to read exactly as
// encoding/json would (an escape in a string, a byte outside printable
// ASCII, a number that is not a plain non-negative integer, a null, a key
// that differs from a field name only in case, a duplicate key) makes it
// fail (ok false), and its caller then decodes the input with
// encoding/json, which gives the answer, or the error, for such input.
type jsonScanner struct {
	data []byte
	i    int
	ok   bool
}

func newJSONScanner(data []byte) *jsonScanner { return &jsonScanner{data: data, ok: true} }

// fail marks the input as not the scanner's to read, and returns false.
func (s *jsonScanner) fail() bool {
	s.ok = false
	return false
}

// ws skips white space.
func (s *jsonScanner) ws() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// byte consumes c after white space.
func (s *jsonScanner) byte(c byte) bool {
	s.ws()
	if !s.ok || s.i >= len(s.data) || s.data[s.i] != c {
		return s.fail()
	}
	s.i++
	return true
}

// peek returns the next byte after white space, or 0 at the end.
func (s *jsonScanner) peek() byte {
	s.ws()
	if s.i >= len(s.data) {
		return 0
	}
	return s.data[s.i]
}

// str reads a string of printable ASCII without escapes and returns its
// bytes, a part of the input.
func (s *jsonScanner) str() []byte {
	if !s.byte('"') {
		return nil
	}
	start := s.i
	for ; s.i < len(s.data); s.i++ {
		switch c := s.data[s.i]; {
		case c == '"':
			s.i++
			return s.data[start : s.i-1]
		case c < 0x20 || c >= 0x7f || c == '\\':
			s.fail()
			return nil
		}
	}
	s.fail()
	return nil
}

// int reads a non-negative integer that fits an int64.
func (s *jsonScanner) int() int64 {
	s.ws()
	start := s.i
	var n int64
	for ; s.i < len(s.data) && '0' <= s.data[s.i] && s.data[s.i] <= '9'; s.i++ {
		if n > (1<<63-1-9)/10 {
			s.fail()
			return 0
		}
		n = n*10 + int64(s.data[s.i]-'0')
	}
	switch {
	case s.i == start, s.i-start > 1 && s.data[start] == '0':
		s.fail()
		return 0
	case s.i < len(s.data):
		// A fraction or exponent is encoding/json's to refuse.
		if c := s.data[s.i]; c == '.' || c == 'e' || c == 'E' {
			s.fail()
			return 0
		}
	}
	return n
}

// bool reads true or false.
func (s *jsonScanner) bool() bool {
	s.ws()
	switch {
	case bytes.HasPrefix(s.data[s.i:], []byte("true")):
		s.i += 4
		return true
	case bytes.HasPrefix(s.data[s.i:], []byte("false")):
		s.i += 5
		return false
	}
	s.fail()
	return false
}

// object reads an object, calling field for each key with the scanner at
// its value, which field must read. An empty object calls nothing.
func (s *jsonScanner) object(field func(key []byte) bool) bool {
	if !s.byte('{') {
		return false
	}
	if s.peek() == '}' {
		s.i++
		return true
	}
	for {
		key := s.str()
		if !s.ok || !s.byte(':') || !field(key) || !s.ok {
			return s.fail()
		}
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return true
		default:
			return s.fail()
		}
	}
}

// array reads an array, calling elem with the scanner at each element.
func (s *jsonScanner) array(elem func() bool) bool {
	if !s.byte('[') {
		return false
	}
	if s.peek() == ']' {
		s.i++
		return true
	}
	for {
		if !elem() || !s.ok {
			return s.fail()
		}
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return true
		default:
			return s.fail()
		}
	}
}

// raw reads any value and returns its bytes, if encoding/json finds it
// valid.
func (s *jsonScanner) raw() []byte {
	s.ws()
	start := s.i
	depth := 0
	for s.i < len(s.data) {
		c := s.data[s.i]
		switch c {
		case '"':
			s.i++
			for s.i < len(s.data) && s.data[s.i] != '"' {
				if s.data[s.i] == '\\' {
					s.i++
				}
				s.i++
			}
			s.i++
		case '{', '[':
			depth++
			s.i++
		case '}', ']':
			if depth == 0 {
				return s.checkRaw(start)
			}
			depth--
			s.i++
		case ',':
			if depth == 0 {
				return s.checkRaw(start)
			}
			s.i++
		default:
			s.i++
		}
		if depth == 0 && (c == '"' || c == '}' || c == ']') {
			return s.checkRaw(start)
		}
	}
	return s.checkRaw(start)
}

func (s *jsonScanner) checkRaw(start int) []byte {
	if s.i > len(s.data) {
		s.fail()
		return nil
	}
	v := s.data[start:s.i]
	if !json.Valid(v) {
		s.fail()
		return nil
	}
	return v
}

// end checks that only white space is left.
func (s *jsonScanner) end() bool {
	s.ws()
	if s.i != len(s.data) {
		return s.fail()
	}
	return s.ok
}

// keyIs reports whether key is name. A key that is name in another case
// (which encoding/json would take for it) fails the scanner.
func (s *jsonScanner) keyIs(key []byte, name string) bool {
	if string(key) == name {
		return true
	}
	if bytes.EqualFold(key, []byte(name)) {
		s.fail()
	}
	return false
}
