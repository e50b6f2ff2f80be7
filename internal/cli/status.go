package cli

import (
	"bytes"
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

// watchInterval is how often status --watch reads the validators.
const watchInterval = time.Second

func (a *app) statusCmd() *cobra.Command {
	var watch bool
	var checkHolder string
	cmd := &cobra.Command{
		Use:   "status [VALIDATOR...]",
		Short: "Show each validator's epoch, state, holder, live leases, watermark and bump",
		Long: `Shows each validator (every registered one, or those named): its epoch and
state (active, revoking, fenced), the holder, the leases live in etcd
(sidecar@holder/epoch), the quorum watermark (the highest height/round/step
signed, and under which epoch), and a bump in progress.

--watch reads again every second and redraws when anything changed (on a
terminal in place; otherwise one rendering after another), until Ctrl-C.

--check-holder H checks that H's sidecars hold leases exactly where H is the
active holder: for each validator where H is active (state active, holder
H), a sidecar of H holds a live lease and no other holder's does; for every
other validator, no sidecar of H holds one. It exits 0 when all pass and 1
otherwise (the chart's helm test and the runbook's step 7 use it).`,
		Example: `  fencectl status
  fencectl status 0x5B38Da6a701c568545dCfcB03FcB875f56beddC4 -o json
  fencectl status "$V" --watch
  fencectl status --check-holder region-b; echo "exit $?"`,
		ValidArgsFunction: a.completeValidators,
		RunE: func(cmd *cobra.Command, args []string) error {
			ids, err := parseIDs(args)
			if err != nil {
				return err
			}
			if watch && checkHolder != "" {
				return usageError("--watch and --check-holder go separately: watch, or check once")
			}
			if checkHolder != "" {
				if err := validateHolder("--check-holder", checkHolder); err != nil {
					return err
				}
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if watch {
				return a.watchStatus(cmd.Context(), c, ids)
			}
			sts, err := statuses(cmd.Context(), c, ids)
			if err != nil {
				return apiError("status", err)
			}
			if checkHolder != "" {
				return a.checkHolder(sts, checkHolder)
			}
			return a.print(api.StatusResponse{Validators: sts}, func(w io.Writer) error { return writeStatus(w, sts) })
		},
	}
	cmd.Flags().BoolVar(&watch, "watch", false, "read again every second and redraw on change, until Ctrl-C")
	cmd.Flags().StringVar(&checkHolder, "check-holder", "", "exit 1 unless holder H's sidecars hold leases exactly where H is the active holder")
	_ = cmd.RegisterFlagCompletionFunc("check-holder", a.completeHolders)
	return cmd
}

// statuses reads ids, or every validator when none is named.
func statuses(ctx context.Context, c *api.Client, ids []fencing.ValidatorID) ([]fencing.Status, error) {
	if len(ids) == 0 {
		return c.Statuses(ctx)
	}
	sts := make([]fencing.Status, 0, len(ids))
	for _, id := range ids {
		st, err := c.Status(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", id, err)
		}
		sts = append(sts, st)
	}
	return sts, nil
}

func writeStatus(w io.Writer, sts []fencing.Status) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VALIDATOR\tEPOCH\tSTATE\tHOLDER\tLEASES\tWATERMARK\tBUMP\tSINCE")
	for _, s := range sts {
		var leases []string
		for _, l := range s.Leases {
			leases = append(leases, fmt.Sprintf("%s@%s/e%d", l.Sidecar, l.Holder, l.Epoch))
		}
		wm := "-"
		if s.Watermark != nil {
			wm = fmt.Sprintf("%s (e%d)", s.Watermark.HRS, s.Watermark.Epoch)
			if s.Watermark.Abandoned {
				wm += " abandoned"
			}
		}
		bump := "-"
		if s.Bump != nil {
			bump = fmt.Sprintf("%s to %s by %s", s.Bump.ID, s.Bump.To, s.Bump.By)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.Epoch.Epoch, s.Epoch.State, s.Epoch.Holder,
			orDash(strings.Join(leases, ",")), wm, bump, ts(s.Epoch.UpdatedAt))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(sts) == 0 {
		_, err := fmt.Fprintln(w, "(no validators registered; add one with fencectl validator add)")
		return err
	}
	return nil
}

// watchStatus redraws the status whenever it changed, until ctx ends (exit
// 0). A failed read is shown and retried: a watch outlives a coordinator
// restart.
func (a *app) watchStatus(ctx context.Context, c *api.Client, ids []fencing.ValidatorID) error {
	redraw := a.g.output == "table" && a.IsTerminal(a.Stdout)
	last := ""
	t := time.NewTicker(watchInterval)
	defer t.Stop()
	for {
		sts, err := statuses(ctx, c, ids)
		if ctx.Err() != nil {
			return nil
		}
		var text string
		if err != nil {
			text = fmt.Sprintf("fencectl: status: %v (reading again every %s)\n", err, watchInterval)
		} else if text, err = a.render(sts); err != nil {
			return err
		}
		if text != last {
			last = text
			switch {
			case redraw:
				fmt.Fprintf(a.Stdout, "\033[H\033[2J%s  fencectl status --watch (Ctrl-C to stop)\n\n%s", ts(time.Now()), text)
			case a.g.output == "table":
				fmt.Fprintf(a.Stdout, "== %s\n%s\n", ts(time.Now()), text)
			case err != nil:
				fmt.Fprint(a.Stderr, text)
			default:
				fmt.Fprint(a.Stdout, text)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// render is one rendering of sts for --watch: the table, or one line of
// JSON, or one YAML document.
func (a *app) render(sts []fencing.Status) (string, error) {
	var b bytes.Buffer
	var err error
	switch a.g.output {
	case "json":
		err = json.NewEncoder(&b).Encode(api.StatusResponse{Validators: sts})
	case "yaml":
		b.WriteString("---\n")
		err = WriteOutput(&b, "yaml", api.StatusResponse{Validators: sts}, nil)
	default:
		err = writeStatus(&b, sts)
	}
	if err != nil {
		return "", &exitError{code: ExitUsage, err: fmt.Errorf("write output: %w", err)}
	}
	return b.String(), nil
}

// HolderCheck is status --check-holder's result.
type HolderCheck struct {
	Holder     string             `json:"holder"`
	OK         bool               `json:"ok"`
	Validators []HolderCheckEntry `json:"validators"`
}

// HolderCheckEntry is one validator's part of a HolderCheck.
type HolderCheckEntry struct {
	Validator fencing.ValidatorID `json:"validator"`
	// Active: the holder is the validator's active holder, so it must hold
	// a lease (and nobody else may); otherwise it must hold none.
	Active bool   `json:"active"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// checkHolder is --check-holder: see the command's help.
func (a *app) checkHolder(sts []fencing.Status, holder string) error {
	res := HolderCheck{Holder: holder, OK: len(sts) > 0, Validators: []HolderCheckEntry{}}
	for _, s := range sts {
		e := checkHolderOf(s, holder)
		res.OK = res.OK && e.OK
		res.Validators = append(res.Validators, e)
	}
	err := a.print(res, func(w io.Writer) error {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "VALIDATOR\tCHECK\tDETAIL")
		for _, e := range res.Validators {
			verdict := "ok"
			if !e.OK {
				verdict = "FAIL"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", e.Validator, verdict, e.Detail)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		switch {
		case len(sts) == 0:
			fmt.Fprintf(w, "FAIL: no validator to check (none registered or named)\n")
		case res.OK:
			fmt.Fprintf(w, "OK: %s holds leases exactly where it is the active holder\n", holder)
		default:
			fmt.Fprintf(w, "FAIL: %s does not hold leases exactly where it is the active holder\n", holder)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !res.OK {
		return exitWith(ExitRefused)
	}
	return nil
}

func checkHolderOf(s fencing.Status, holder string) HolderCheckEntry {
	e := HolderCheckEntry{Validator: s.ID, Active: s.Epoch.State == fencing.StateActive && s.Epoch.Holder == holder}
	var mine, others []string
	for _, l := range s.Leases {
		name := fmt.Sprintf("%s@%s/e%d", l.Sidecar, l.Holder, l.Epoch)
		if l.Holder == holder {
			mine = append(mine, name)
		} else {
			others = append(others, name)
		}
	}
	where := fmt.Sprintf("epoch %d %s on %s", s.Epoch.Epoch, s.Epoch.State, s.Epoch.Holder)
	switch {
	case e.Active && len(mine) == 0:
		e.Detail = fmt.Sprintf("%s, but no sidecar of %s holds a lease: it is not signing", where, holder)
	case e.Active && len(others) > 0:
		e.Detail = fmt.Sprintf("%s, but another holder's sidecar holds a lease too: %s", where, strings.Join(others, ", "))
	case e.Active:
		e.OK, e.Detail = true, fmt.Sprintf("%s; lease held by %s", where, strings.Join(mine, ", "))
	case len(mine) > 0:
		e.Detail = fmt.Sprintf("%s, and %s is not its active holder, but holds a lease: %s", where, holder, strings.Join(mine, ", "))
	default:
		e.OK, e.Detail = true, fmt.Sprintf("%s; %s is not its active holder and holds no lease", where, holder)
	}
	return e
}
