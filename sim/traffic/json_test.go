package traffic

import (
	"encoding/json"
	"errors"
	"net/netip"
	"testing"
	"time"
)

func TestResultJSONRoundTrip(t *testing.T) {
	t.Parallel()
	cases := []Result{
		{Outcome: Allowed, Backend: "x/a", SourceSeen: netip.MustParseAddr("10.244.1.5"), HTTPStatus: 200, Elapsed: 3 * time.Millisecond},
		{Outcome: Timeout, Elapsed: 2 * time.Second, Detail: "read hello: i/o timeout"},
		{Outcome: Refused, HTTPStatus: 403, Detail: "http status 403"},
		{Outcome: Allowed, SourceSeen: netip.MustParseAddr("fd00::1")},
	}
	for _, r := range cases {
		b, err := json.Marshal(r.JSON())
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseResultJSON(append([]byte("some diagnostics\n"), b...))
		if err != nil {
			t.Fatalf("parse %s: %v", b, err)
		}
		if got != r {
			t.Errorf("round trip of %s: got %+v, want %+v", b, got, r)
		}
	}
}

func TestParseResultJSONErrors(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"",
		"not json",
		`{"outcome":"maybe","elapsedMs":1}`,
		`{"outcome":"allowed","sourceSeen":"nope","elapsedMs":1}`,
		`{"outcome":"allowed","surprise":1}`,
	} {
		if _, err := ParseResultJSON([]byte(in)); !errors.Is(err, ErrBadResult) {
			t.Errorf("ParseResultJSON(%q) = %v, want ErrBadResult", in, err)
		}
	}
}
