package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/fencing"
)

// followInterval is how often history --follow asks for new events, and
// followPage how many of the newest it asks for each time.
const (
	followInterval = time.Second
	followPage     = 100
)

func (a *app) historyCmd() *cobra.Command {
	var follow bool
	var limit int
	cmd := &cobra.Command{
		Use:   "history [VALIDATOR] [--follow] [--limit N]",
		Short: "The append-only event log, in commit order",
		Long: `Prints the history: every transition (validator_added, revoke_committed,
bump_started, fenced, grant_committed, ...), hrs_abandoned, audit results,
with when, who (the authenticated principal), the comment and the reason, in
etcd commit order (not by wall clock: replicas' clocks may differ).

--follow keeps printing new events as they commit, until Ctrl-C; with -o json
each event is one line of JSON.`,
		Example: `  fencectl history --limit 20
  fencectl history 0x5B38Da6a701c568545dCfcB03FcB875f56beddC4 -o json
  fencectl history --follow`,
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: a.completeValidators,
		RunE: func(cmd *cobra.Command, args []string) error {
			if limit < 0 {
				return usageError("--limit %d must be >= 0 (0: every event)", limit)
			}
			ids, err := parseIDs(args)
			if err != nil {
				return err
			}
			var id fencing.ValidatorID
			if len(ids) == 1 {
				id = ids[0]
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			evs, err := c.Events(cmd.Context(), id, limit)
			if err != nil {
				return apiError("history", err)
			}
			if follow {
				return a.followHistory(cmd.Context(), c, id, evs)
			}
			return a.print(api.EventsResponse{Events: evs}, func(w io.Writer) error {
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, historyHeader)
				for _, ev := range evs {
					fmt.Fprintln(tw, historyRow(ev))
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().BoolVar(&follow, "follow", false, "keep printing new events as they commit, until Ctrl-C")
	cmd.Flags().IntVar(&limit, "limit", 0, "show only the newest N events (0: all)")
	return cmd
}

const historyHeader = "TIME\tREV\tEVENT\tVALIDATOR\tFROM\tTO\tBY\tCOMMENT\tREASON\tDETAIL"

func historyRow(ev fencing.Event) string {
	return fmt.Sprintf("%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s", ts(ev.At), ev.Revision, ev.Kind, orDash(string(ev.Validator)),
		epochText(ev.From), epochText(ev.To), orDash(ev.By), orDash(ev.Comment), orDash(ev.Reason), orDash(oneLine(ev.Detail)))
}

func oneLine(s string) string { return strings.NewReplacer("\t", " ", "\n", " ").Replace(s) }

func epochText(ep *fencing.Epoch) string {
	if ep == nil {
		return "-"
	}
	return fmt.Sprintf("%d/%s/%s", ep.Epoch, ep.State, ep.Holder)
}

// followHistory prints evs, then every newer event as it commits, until
// ctx ends. It asks for the newest followPage events each time and, when
// all of them are new (more may have committed in between), for all.
func (a *app) followHistory(ctx context.Context, c *api.Client, id fencing.ValidatorID, evs []fencing.Event) error {
	var last int64
	printEvents := func(evs []fencing.Event) error {
		for _, ev := range evs {
			if ev.Revision <= last {
				continue
			}
			last = ev.Revision
			var err error
			switch a.g.output {
			case "json":
				err = json.NewEncoder(a.Stdout).Encode(ev)
			case "yaml":
				if _, err = fmt.Fprintln(a.Stdout, "---"); err == nil {
					err = WriteOutput(a.Stdout, "yaml", ev, nil)
				}
			default:
				// Fixed columns: a tabwriter cannot align rows yet to come.
				_, err = fmt.Fprintf(a.Stdout, "%s  rev %d  %-17s %s  %s -> %s  by %s (%s): %s  %s\n", ts(ev.At), ev.Revision, ev.Kind,
					orDash(string(ev.Validator)), epochText(ev.From), epochText(ev.To), orDash(ev.By), orDash(ev.Comment), orDash(ev.Reason), orDash(oneLine(ev.Detail)))
			}
			if err != nil {
				return &exitError{code: ExitUsage, err: fmt.Errorf("write output: %w", err)}
			}
		}
		return nil
	}
	if err := printEvents(evs); err != nil {
		return err
	}
	t := time.NewTicker(followInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		page, err := c.Events(ctx, id, followPage)
		if err == nil && len(page) == followPage && page[0].Revision > last {
			page, err = c.Events(ctx, id, 0)
		}
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			fmt.Fprintf(a.Stderr, "fencectl: history: %v (asking again every %s)\n", err, followInterval)
			continue
		}
		if err := printEvents(page); err != nil {
			return err
		}
	}
}

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

// NewEvidence builds the report from statuses and events: the events at or
// after since, audits apart, the others by validator; want, when not empty,
// keeps only those validators.
func NewEvidence(generated time.Time, coordinator []string, since time.Time, sts []fencing.Status, evs []fencing.Event, want []fencing.ValidatorID) Evidence {
	rep := Evidence{GeneratedAt: generated.UTC(), Coordinator: coordinator, Since: since.UTC(), Validators: []ValidatorEvidence{}, Audits: []fencing.Event{}}
	byValidator := map[fencing.ValidatorID][]fencing.Event{}
	for _, ev := range evs {
		if ev.At.Before(since) {
			continue
		}
		if ev.Kind == fencing.EventAudit {
			rep.Audits = append(rep.Audits, ev)
			continue
		}
		byValidator[ev.Validator] = append(byValidator[ev.Validator], ev)
	}
	keep := map[fencing.ValidatorID]bool{}
	for _, id := range want {
		keep[id] = true
	}
	for _, s := range sts {
		if len(keep) > 0 && !keep[s.ID] {
			continue
		}
		ve := ValidatorEvidence{Status: s, Events: byValidator[s.ID]}
		if ve.Events == nil {
			ve.Events = []fencing.Event{}
		}
		rep.Validators = append(rep.Validators, ve)
	}
	return rep
}

func (a *app) evidenceCmd() *cobra.Command {
	var since time.Duration
	cmd := &cobra.Command{
		Use:   "evidence [VALIDATOR...] [--since D]",
		Short: "The incident evidence report: decisions, who and why, drained leases, watermarks, audits",
		Long: `Writes the incident evidence report: each validator's current epoch, holder,
live leases and watermark; every transition in the window with who, when and
why; how each lease of a revoked epoch ended (released or expired); and the
audit results recorded. -o json gives the same as one JSON document to keep.`,
		Example: `  fencectl evidence --since 6h > INC-42-evidence.txt
  fencectl evidence 0x5B38Da6a701c568545dCfcB03FcB875f56beddC4 --since 24h -o json > evidence.json`,
		ValidArgsFunction: a.completeValidators,
		RunE: func(cmd *cobra.Command, args []string) error {
			if since <= 0 {
				return usageError("--since must be a positive duration, e.g. 24h")
			}
			ids, err := parseIDs(args)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			now := time.Now()
			sts, err := c.Statuses(cmd.Context())
			if err != nil {
				return apiError("evidence", err)
			}
			evs, err := c.Events(cmd.Context(), "", 0)
			if err != nil {
				return apiError("evidence", err)
			}
			coord := a.g.coordinator
			if len(coord) == 0 {
				coord = []string{DefaultCoordinator}
			}
			rep := NewEvidence(now, coord, now.Add(-since), sts, evs, ids)
			if len(ids) > 0 && len(rep.Validators) != len(ids) {
				return apiError("evidence", fencing.Errorf(fencing.CodeNotFound, "some named validators are not registered (found %d of %d)", len(rep.Validators), len(ids)))
			}
			return a.print(rep, func(w io.Writer) error { WriteEvidence(w, rep); return nil })
		},
	}
	cmd.Flags().DurationVar(&since, "since", 24*time.Hour, "the window: events newer than this")
	return cmd
}

// WriteEvidence writes the evidence report for a person.
func WriteEvidence(w io.Writer, r Evidence) {
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
			fmt.Fprintf(w, "bump in progress: %s, epoch %d -> %s by %s since %s (%s)\n", s.Bump.ID, s.Bump.FromEpoch, s.Bump.To, s.Bump.By, ts(s.Bump.StartedAt), s.Bump.Reason)
		}
		if len(v.Events) == 0 {
			fmt.Fprintf(w, "no events in the window\n\n")
			continue
		}
		fmt.Fprintf(w, "events (commit order):\n")
		for _, ev := range v.Events {
			by := orDash(ev.By)
			if ev.Comment != "" {
				by += " (" + ev.Comment + ")"
			}
			fmt.Fprintf(w, "  %s rev %d  %-17s %s -> %s  by %s: %s", ts(ev.At), ev.Revision, ev.Kind, epochText(ev.From), epochText(ev.To), by, orDash(ev.Reason))
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
