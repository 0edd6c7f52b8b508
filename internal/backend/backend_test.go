package backend

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

type named string

func (n named) Name() string                                { return string(n) }
func (n named) Add(context.Context, *enforce.Sandbox) error { return nil }
func (n named) Remove(uint32) error                         { return nil }
func (n named) Events() <-chan events.Event                 { return nil }
func (n named) Stats() (enforce.Stats, error)               { return enforce.Stats{}, nil }
func (n named) Close() error                                { return nil }

func opener(probe, lsm, fan error) (Opener, *[]string) {
	var calls []string
	return Opener{
		ProbeLSM: func() error { calls = append(calls, "probe"); return probe },
		OpenLSM: func(Options) (enforce.Backend, error) {
			calls = append(calls, "lsm")
			if lsm != nil {
				return nil, lsm
			}
			return named("lsm"), nil
		},
		OpenFanotify: func(Options) (enforce.Backend, error) {
			calls = append(calls, "fanotify")
			if fan != nil {
				return nil, fan
			}
			return named("fanotify"), nil
		},
	}, &calls
}

func TestOpen(t *testing.T) {
	notActive := errors.New("BPF LSM is not active: add bpf to lsm=")
	tests := []struct {
		name           string
		choice         policy.BackendChoice
		probe, lsm, fa error
		want           string // backend name, or "" for an error
		calls          string
		errHas         []string
		warned         bool
	}{
		{"auto lsm works", policy.BackendAuto, nil, nil, nil, "lsm", "[probe lsm]", nil, false},
		{"auto falls back", policy.BackendAuto, notActive, nil, nil, "fanotify", "[probe fanotify]", nil, true},
		{"empty is auto", "", notActive, nil, nil, "fanotify", "[probe fanotify]", nil, true},
		{"auto lsm load fails", policy.BackendAuto, nil, errors.New("verifier"), nil, "fanotify", "[probe lsm fanotify]", nil, true},
		{"auto nothing works", policy.BackendAuto, notActive, nil, errors.New("EPERM"), "", "[probe fanotify]",
			[]string{"BPF LSM: BPF LSM is not active", "fanotify: EPERM", "aigate doctor"}, false},
		{"lsm requested works", policy.BackendLSM, nil, nil, nil, "lsm", "[probe lsm]", nil, false},
		{"lsm requested unavailable", policy.BackendLSM, notActive, nil, nil, "", "[probe]",
			[]string{"lsm backend was requested", "not active", "--backend fanotify"}, false},
		{"fanotify requested", policy.BackendFanotify, nil, nil, nil, "fanotify", "[fanotify]", nil, false},
		{"fanotify requested fails", policy.BackendFanotify, nil, nil, errors.New("EPERM"), "", "[fanotify]",
			[]string{"fanotify backend was requested", "EPERM", "root"}, false},
		{"unknown", "ebpf", nil, nil, nil, "", "[]", []string{`unknown backend "ebpf"`}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, calls := opener(tt.probe, tt.lsm, tt.fa)
			var warned []string
			b, err := o.Open(tt.choice, Options{Warn: func(s string) { warned = append(warned, s) }})
			if got := fmt.Sprint(*calls); got != tt.calls {
				t.Errorf("calls %s, want %s", got, tt.calls)
			}
			if tt.want == "" {
				if err == nil {
					t.Fatalf("got backend %s, want an error", b.Name())
				}
				if !errors.Is(err, ErrUnavailable) {
					t.Errorf("error does not wrap ErrUnavailable: %v", err)
				}
				for _, s := range tt.errHas {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q lacks %q", err, s)
					}
				}
				return
			}
			if err != nil || b.Name() != tt.want {
				t.Fatalf("got %v, %v; want %s", b, err, tt.want)
			}
			if (len(warned) > 0) != tt.warned {
				t.Errorf("warnings %q, want warned=%v", warned, tt.warned)
			}
		})
	}
}

func TestOpenWithoutBackends(t *testing.T) {
	_, err := Opener{}.Open(policy.BackendAuto, Options{})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "not available in this build") {
		t.Fatalf("err = %v", err)
	}
}
