package cli

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/validator-fencing/fencing/internal/fencing"
)

// Evidence is the incident evidence report: for each validator its current
// state, watermark and every event in the window, plus the audits recorded.
type Evidence struct {
	GeneratedAt time.Time           `json:"generated_at"`
	Coordinator []string            `json:"coordinator"`
	Since       time.Time           `json:"since"`
	Validators  []ValidatorEvidence `json:"validators"`
	Audits      []fencing.Event     `json:"audits"`
}

// ValidatorEvidence is one validator's part of the report.
type ValidatorEvidence struct {
	Status fencing.Status  `json:"status"`
	Events []fencing.Event `json:"events"`
}

func evidenceCommand() command {
	var since time.Duration
	return command{
		name: "evidence",
		usage: `fencectl evidence [VALIDATOR...] [--since 24h]

Writes the incident evidence report: each validator's current epoch, holder,
live leases and watermark; every transition in the window with who, when and
why; how each lease of a revoked epoch ended (released or expired); and the
audit results recorded. --output json gives the same as one JSON document.
`,
		flags: func(fs *flag.FlagSet) {
			fs.DurationVar(&since, "since", 24*time.Hour, "the window: events newer than this")
		},
		run: func(e *env, args []string) int {
			if since <= 0 {
				return e.usageError(errors.New("--since must be a positive duration, e.g. 24h"))
			}
			c, err := e.client()
			if err != nil {
				return e.usageError(err)
			}
			rep := Evidence{GeneratedAt: time.Now().UTC(), Coordinator: e.coord, Since: time.Now().Add(-since).UTC(), Audits: []fencing.Event{}}
			if len(rep.Coordinator) == 0 {
				rep.Coordinator = []string{"http://127.0.0.1:7600"}
			}
			sts, err := c.Statuses(e.ctx)
			if err != nil {
				return e.fail("evidence", err)
			}
			ids, err := parseIDs(args)
			if err != nil {
				return e.usageError(err)
			}
			want := map[fencing.ValidatorID]bool{}
			for _, id := range ids {
				want[id] = true
			}
			evs, err := c.Events(e.ctx, "", 0)
			if err != nil {
				return e.fail("evidence", err)
			}
			byValidator := map[fencing.ValidatorID][]fencing.Event{}
			for _, ev := range evs {
				if ev.At.Before(rep.Since) {
					continue
				}
				if ev.Kind == fencing.EventAudit {
					rep.Audits = append(rep.Audits, ev)
					continue
				}
				byValidator[ev.Validator] = append(byValidator[ev.Validator], ev)
			}
			for _, s := range sts {
				if len(want) > 0 && !want[s.ID] {
					continue
				}
				ve := ValidatorEvidence{Status: s, Events: byValidator[s.ID]}
				if ve.Events == nil {
					ve.Events = []fencing.Event{}
				}
				rep.Validators = append(rep.Validators, ve)
			}
			if len(want) > 0 && len(rep.Validators) != len(want) {
				return e.fail("evidence", fencing.Errorf(fencing.CodeNotFound, "some named validators are not registered (found %d of %d)", len(rep.Validators), len(want)))
			}
			if e.output == "json" {
				return e.json(rep)
			}
			writeEvidence(e, rep)
			return ExitOK
		},
	}
}

func writeEvidence(e *env, r Evidence) {
	w := e.stdout
	fmt.Fprintf(w, "VALIDATOR FENCING EVIDENCE REPORT\n")
	fmt.Fprintf(w, "generated %s from %s; window since %s\n\n", ts(r.GeneratedAt), strings.Join(r.Coordinator, ","), ts(r.Since))
	for _, v := range r.Validators {
		s := v.Status
		fmt.Fprintf(w, "== %s\n", s.ID)
		fmt.Fprintf(w, "current: epoch %d %s on %s since %s (by %s: %s)\n", s.Epoch.Epoch, s.Epoch.State, s.Epoch.Holder, ts(s.Epoch.UpdatedAt), s.Epoch.By, s.Epoch.Reason)
		if s.Watermark != nil {
			fmt.Fprintf(w, "quorum watermark: %s digest %s, epoch %d, sidecar %s\n", s.Watermark.HRS, s.Watermark.Digest, s.Watermark.Epoch, s.Watermark.Sidecar)
		} else {
			fmt.Fprintf(w, "quorum watermark: none (nothing journaled)\n")
		}
		for _, l := range s.Leases {
			fmt.Fprintf(w, "live lease: %s on %s, epoch %d, ttl %ds\n", l.Sidecar, l.Holder, l.Epoch, l.TTLSeconds)
		}
		if s.Bump != nil {
			fmt.Fprintf(w, "bump in progress: epoch %d -> %s by %s since %s (%s)\n", s.Bump.FromEpoch, s.Bump.To, s.Bump.By, ts(s.Bump.StartedAt), s.Bump.Reason)
		}
		if len(v.Events) == 0 {
			fmt.Fprintf(w, "no events in the window\n\n")
			continue
		}
		fmt.Fprintf(w, "events (commit order):\n")
		for _, ev := range v.Events {
			fmt.Fprintf(w, "  %s rev %d  %-17s %s -> %s  by %s: %s", ts(ev.At), ev.Revision, ev.Kind, epochText(ev.From), epochText(ev.To), orDash(ev.By), orDash(ev.Reason))
			if ev.Kind == fencing.EventFenced {
				fmt.Fprintf(w, "\n    drained leases: %s", ev.Detail)
			}
			fmt.Fprintln(w)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "== audits in the window\n")
	if len(r.Audits) == 0 {
		fmt.Fprintf(w, "none recorded: run fencectl audit journal and fencectl audit chain\n")
	}
	for _, a := range r.Audits {
		fmt.Fprintf(w, "  %s  %s by %s: %s\n", ts(a.At), a.Reason, orDash(a.By), a.Detail)
	}
}
