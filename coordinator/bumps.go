package coordinator

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/fencing"
	"github.com/validator-fencing/fencing/internal/store"
)

// A bump is checked before it revokes (preflight): the target holder must be
// known (a typo such as regoin-b would grant an epoch nobody can use) and,
// unless forced, a sidecar of it must have reported ready for the validator
// within store.PresenceTTL (otherwise the validator goes offline until one
// does). A dry run answers the plan and the checks and changes nothing.

// preflight checks a bump of id to holder to and returns the plan.
func (s *Server) preflight(ctx context.Context, id fencing.ValidatorID, to string) (api.BumpPlan, error) {
	st, err := s.st.Status(ctx, id)
	if err != nil {
		return api.BumpPlan{}, err
	}
	plan := api.BumpPlan{Validator: st.ID, From: st.Epoch, To: to, Leases: []api.LiveLease{}, Standbys: []fencing.Presence{}}
	live, err := s.st.LiveLeases(ctx, st.ID, st.Epoch.Epoch)
	if err != nil {
		return api.BumpPlan{}, err
	}
	for _, l := range live {
		plan.Leases = append(plan.Leases, api.LiveLease{Holder: l.Holder, Sidecar: l.Sidecar, ExpiresIn: api.Duration{Duration: l.ExpiresIn}})
	}
	if st.Bump != nil {
		plan.Checks = append(plan.Checks, api.Check{Name: "no bump in progress", Detail: fmt.Sprintf("validator %s: a bump from epoch %d to %s by %s is already in progress since %s (id %s)", st.ID, st.Bump.FromEpoch, st.Bump.To, st.Bump.By, st.Bump.StartedAt.Format(time.RFC3339), st.Bump.ID)})
	}
	known := s.st.CheckHolderKnown(ctx, to)
	if known != nil && fencing.CodeOf(known) != fencing.CodeNotFound {
		return api.BumpPlan{}, known // etcd could not say: not a refusal
	}
	plan.Checks = append(plan.Checks, api.Check{Name: "holder known", OK: known == nil, Detail: detail(known, "holder "+to+" is known")})
	pres, err := s.st.Presence(ctx, st.ID)
	if err != nil {
		return api.BumpPlan{}, err
	}
	var ready []string
	var notReady []string
	for _, p := range pres {
		if p.Holder != to {
			continue
		}
		plan.Standbys = append(plan.Standbys, p)
		if p.Ready() {
			ready = append(ready, p.Sidecar)
		} else {
			notReady = append(notReady, fmt.Sprintf("%s: %v", p.Sidecar, p.Problems))
		}
	}
	readyCheck := api.Check{Name: "standby ready", OK: len(ready) > 0}
	switch {
	case len(ready) > 0:
		readyCheck.Detail = fmt.Sprintf("%s reported ready for %s", ready, st.ID)
	case len(notReady) > 0:
		readyCheck.Detail = fmt.Sprintf("no sidecar of %s is ready for %s: %v", to, st.ID, notReady)
	default:
		readyCheck.Detail = fmt.Sprintf("no sidecar of %s reported for %s in the last %s: after the grant the validator would stay offline until one does", to, st.ID, store.PresenceTTL)
	}
	plan.Checks = append(plan.Checks, readyCheck)
	if st.Epoch.State == fencing.StateActive {
		plan.Steps = append(plan.Steps, fmt.Sprintf("revoke epoch %d on %s", st.Epoch.Epoch, st.Epoch.Holder))
	}
	if len(live) > 0 {
		longest := slices.MaxFunc(live, func(a, b store.LiveLease) int { return int(a.ExpiresIn - b.ExpiresIn) })
		plan.Steps = append(plan.Steps, fmt.Sprintf("wait until %d lease(s) of epoch %d end: released at once by a sidecar that sees the revoke, or expired in etcd within %s", len(live), st.Epoch.Epoch, longest.ExpiresIn))
	}
	plan.Steps = append(plan.Steps, fmt.Sprintf("grant epoch %d to %s", st.Epoch.Epoch+1, to))
	return plan, nil
}

func detail(err error, ok string) string {
	if err != nil {
		if fe, isFE := err.(*fencing.Error); isFE {
			return fe.Message
		}
		return err.Error()
	}
	return ok
}

// bump records the bump, has the reconciler drive it, and waits up to
// req.Wait for the grant: 200 with the timeline when granted, 202 with the
// progress so far when still draining (the bump goes on regardless; its
// progress streams from GET .../bumps/{bump}/progress). A dry run answers
// 200 with the plan.
func (s *Server) bump(w http.ResponseWriter, r *http.Request) {
	s.startBump(w, r, "bump", func(st fencing.Status, req *api.BumpRequest) error {
		if req.To == st.Epoch.Holder && st.Epoch.State == fencing.StateActive {
			return fencing.Errorf(fencing.CodeBadRequest, "validator %s is already active on %s; bump --to names another holder", st.ID, req.To)
		}
		return nil
	})
}

// unfreeze grants a frozen validator's next epoch back to the holder it had.
func (s *Server) unfreeze(w http.ResponseWriter, r *http.Request) {
	s.startBump(w, r, "unfreeze", func(st fencing.Status, req *api.BumpRequest) error {
		if st.Epoch.State == fencing.StateActive {
			return fencing.Errorf(fencing.CodeConflict, "validator %s is active (epoch %d on %s); there is nothing to unfreeze", st.ID, st.Epoch.Epoch, st.Epoch.Holder)
		}
		if req.To != "" && req.To != st.Epoch.Holder {
			return fencing.Errorf(fencing.CodeBadRequest, "unfreeze grants %s back to %s; to move it to %s, bump it", st.ID, st.Epoch.Holder, req.To)
		}
		req.To = st.Epoch.Holder
		return nil
	})
}

func (s *Server) startBump(w http.ResponseWriter, r *http.Request, op string, check func(fencing.Status, *api.BumpRequest) error) {
	var req api.BumpRequest
	if err := api.DecodeJSON(w, r, &req); err != nil {
		s.fail(w, r, op, err)
		return
	}
	if req.Wait.Duration > 10*time.Minute {
		s.fail(w, r, op, fencing.Errorf(fencing.CodeBadRequest, "wait %s is longer than 10m; the bump continues in the background, follow it with fencectl bump --follow", req.Wait.Duration))
		return
	}
	var st fencing.Status
	id, err := pathID(r)
	if err == nil {
		st, err = s.st.Status(r.Context(), id)
	}
	if err == nil {
		err = check(st, &req)
	}
	if err == nil {
		err = fencing.ValidateHolder(req.To)
	}
	if err == nil {
		err = change(r, req.Operator, req.Reason).Validate()
	}
	if err == nil && req.ExpectedEpoch != 0 && req.ExpectedEpoch != st.Epoch.Epoch && !(st.Bump != nil && st.Bump.ID == req.ID) {
		err = fencing.Errorf(fencing.CodeConflict, "validator %s: expected epoch %d but the current epoch is %d (%s on %s); re-read fencectl status", st.ID, req.ExpectedEpoch, st.Epoch.Epoch, st.Epoch.State, st.Epoch.Holder)
	}
	var plan api.BumpPlan
	if err == nil {
		plan, err = s.preflight(r.Context(), st.ID, req.To)
	}
	if err != nil {
		s.fail(w, r, op, err)
		return
	}
	if req.DryRun {
		s.ok(w, op, http.StatusOK, plan)
		return
	}
	// A retry of a bump already recorded skips the checks: it changes nothing.
	retry := st.Bump != nil && req.ID != "" && st.Bump.ID == req.ID
	for _, c := range plan.Checks {
		if c.OK || retry || (c.Name == "standby ready" && req.Force) {
			continue
		}
		code := fencing.CodeNotReady
		switch c.Name {
		case "holder known":
			code = fencing.CodeNotFound
		case "no bump in progress":
			code = fencing.CodeConflict
		}
		hint := ""
		if c.Name == "standby ready" {
			hint = "; check the standby (fencectl bump --dry-run shows what it reported), or bump with --force to revoke anyway"
		}
		s.fail(w, r, op, fencing.Errorf(code, "%s %s to %s refused before anything changed: %s%s", op, st.ID, req.To, c.Detail, hint))
		return
	}
	b, err := s.st.StartBump(r.Context(), st.ID, req.ExpectedEpoch, req.To, change(r, req.Operator, req.Reason), req.ID)
	if err != nil {
		s.fail(w, r, op, err)
		return
	}
	s.reconciler.kick(st.ID)
	extendWrite(w, req.Wait.Duration)
	ctx, cancel := context.WithTimeout(r.Context(), req.Wait.Duration)
	defer cancel()
	res, err := waitBump(ctx, s.st, st.ID, b, req.FirstSignatureWait.Duration)
	if err != nil {
		s.fail(w, r, op, err)
		return
	}
	if !res.Done {
		s.metrics.result(op, fencing.CodeInProgress)
		api.WriteJSON(w, http.StatusAccepted, res)
		return
	}
	s.ok(w, op, http.StatusOK, res)
}

// progress streams a bump's timeline as each step commits, the leases it
// still waits for (about once a second, with the time etcd gives each), and
// its end: NDJSON, one api.BumpProgress a line.
func (s *Server) progress(w http.ResponseWriter, r *http.Request) {
	bumpID := r.PathValue("bump")
	var st fencing.Status
	id, err := pathID(r)
	if err == nil {
		st, err = s.st.Status(r.Context(), id)
	}
	if err != nil {
		s.fail(w, r, "bump_progress", err)
		return
	}
	b, err := s.findBump(r.Context(), st, bumpID)
	if err != nil {
		s.fail(w, r, "bump_progress", err)
		return
	}
	var firstWait time.Duration
	if v := r.URL.Query().Get("first_signature_wait"); v != "" {
		if firstWait, err = time.ParseDuration(v); err != nil || firstWait < 0 || firstWait > time.Minute {
			s.fail(w, r, "bump_progress", fencing.Errorf(fencing.CodeBadRequest, "first_signature_wait %q must be a duration of at most 1m", v))
			return
		}
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	send := func(p api.BumpProgress) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		if enc.Encode(p) != nil {
			return false
		}
		return rc.Flush() == nil
	}
	seen := map[fencing.TimelineEntry]bool{}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	lastDrain := time.Time{}
	for {
		cur, err := s.st.Status(r.Context(), st.ID)
		var tl []fencing.TimelineEntry
		if err == nil {
			tl, err = timeline(r.Context(), s.st, st.ID, b)
		}
		if err != nil {
			body := api.ErrorBody(err)
			send(api.BumpProgress{Error: &body})
			return
		}
		for _, te := range tl {
			if !seen[te] {
				seen[te] = true
				if !send(api.BumpProgress{Step: &te}) {
					return
				}
			}
		}
		if cur.Epoch.Epoch > b.FromEpoch {
			ctx, cancel := context.WithTimeout(r.Context(), firstWait+5*time.Second)
			res, err := waitBump(ctx, s.st, st.ID, b, firstWait)
			cancel()
			if err != nil {
				body := api.ErrorBody(err)
				send(api.BumpProgress{Error: &body})
				return
			}
			send(api.BumpProgress{Done: &res})
			return
		}
		if cur.Epoch.State == fencing.StateRevoking && time.Since(lastDrain) >= time.Second {
			lastDrain = time.Now()
			live, err := s.st.LiveLeases(r.Context(), st.ID, b.FromEpoch)
			if err == nil && len(live) > 0 {
				d := make([]api.LiveLease, 0, len(live))
				for _, l := range live {
					d = append(d, api.LiveLease{Holder: l.Holder, Sidecar: l.Sidecar, ExpiresIn: api.Duration{Duration: l.ExpiresIn}})
				}
				if !send(api.BumpProgress{Draining: d}) {
					return
				}
			}
		}
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
		}
	}
}

// findBump is the bump bumpID of st: in progress, or granted earlier.
func (s *Server) findBump(ctx context.Context, st fencing.Status, bumpID string) (fencing.Bump, error) {
	if st.Bump != nil && st.Bump.ID == bumpID {
		return *st.Bump, nil
	}
	b, ok, err := s.st.GrantedBump(ctx, st.ID, bumpID)
	if err != nil {
		return fencing.Bump{}, err
	}
	if !ok {
		return fencing.Bump{}, fencing.Errorf(fencing.CodeNotFound, "validator %s has no bump %q in progress or in its history", st.ID, bumpID)
	}
	return b, nil
}

func (s *Server) abandon(r *http.Request, req api.AbandonRequest) (any, error) {
	id, err := pathID(r)
	if err != nil {
		return nil, err
	}
	wm, err := s.st.Abandon(r.Context(), id, fencing.HRS{Height: req.Height, Round: req.Round, Step: req.Step}, change(r, req.Operator, req.Reason))
	return wm, err
}

func (s *Server) removeValidator(r *http.Request, req api.ChangeRequest) (any, error) {
	id, err := pathID(r)
	if err != nil {
		return nil, err
	}
	return nil, s.st.RemoveValidator(r.Context(), id, change(r, req.Operator, req.Reason))
}

func (s *Server) registerHolder(r *http.Request, req api.ChangeRequest) (any, error) {
	return nil, s.st.RegisterHolder(r.Context(), req.Holder, change(r, req.Operator, req.Reason))
}

func (s *Server) listHolders(w http.ResponseWriter, r *http.Request) {
	hs, err := s.st.Holders(r.Context())
	if err != nil {
		s.fail(w, r, "holders", err)
		return
	}
	api.WriteJSON(w, http.StatusOK, api.HoldersResponse{Holders: hs})
}
