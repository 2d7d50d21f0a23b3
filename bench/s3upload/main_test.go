package main

import "testing"

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		in, bucket, prefix string
		ok                 bool
	}{
		{"s3://b/p/q/", "b", "p/q", true},
		{"s3://b", "b", "", true},
		{"s3:///p", "", "p", false},
		{"b/p", "", "", false},
	} {
		b, p, ok := parseURL(tc.in)
		if b != tc.bucket || p != tc.prefix || ok != tc.ok {
			t.Errorf("parseURL(%q) = %q, %q, %v; want %q, %q, %v", tc.in, b, p, ok, tc.bucket, tc.prefix, tc.ok)
		}
	}
}
