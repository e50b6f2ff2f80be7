// Package fencing holds the vocabulary of validator fencing with no I/O: the
// per-validator epoch record and its state machine, the lease token, the
// height/round/step (HRS) ordering used by watermarks and the journal, and the
// error code words that travel over every API.
//
// # Epoch state machine
//
// One record per validator. Every transition below is implemented once, in
// this package, as a pure function from the current record to the next one;
// the etcd store commits the result with a compare-and-swap on the record's
// revision, so a transition computed from a stale read never lands.
//
//	| #  | from              | event                      | to                  | function   |
//	|----|-------------------|----------------------------|---------------------|------------|
//	| T1 | (none)            | validator add (holder H)   | active(1, H)        | NewEpoch   |
//	| T2 | active(N, H)      | freeze / first half of bump | revoking(N, H)     | Freeze     |
//	| T3 | revoking(N, H)    | every lease of N gone      | fenced(N, H)        | Fence      |
//	| T4 | fenced(N, H)      | grant to H'                | active(N+1, H')     | Grant      |
//
// A bump is T2, wait for the drain, T3, T4 as one resumable operation whose
// intent is itself recorded in etcd (see Bump). Nothing else moves an epoch:
// there is no transition back from revoking to active, and epochs only grow.
//
// # Who may sign
//
// A sidecar may hold a lease under epoch N only while the record is active(N)
// and its holder equals the record's holder (Epoch.AllowsLease). The coordinator
// checks this in Go and then commits the lease with a transaction that compares
// the record's mod revision, which pins epoch, state and holder at once.
package fencing
