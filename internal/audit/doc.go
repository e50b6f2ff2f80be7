// Package audit finds duplicate signatures: a validator that signed two
// different things for one slot. It is the independent check behind
// "confirm the former active validators cannot produce duplicate signatures"
// (docs/architecture.md, the problem): prevention can fail (a key copied by hand, a restored backup,
// a bug), the audit looks at what was actually signed.
//
// # Sources
//
//   - The journal (AuditJournal, RunJournalAudit): quorum journal entries
//     from a JournalSource (the coordinator), a sidecar's local journal
//     (ReadLocalJournal, read by internal/localjournal with the sidecar's
//     own rules), and the event history. Reported: every
//     (validator, HRS) with two digests, and every entry written under epoch
//     N after N's revoke committed.
//   - Chains (AuditChain): headers read over JSON-RPC from one or more
//     nodes, in batches, with bounded concurrency, retries with backoff and
//     a resumable checkpoint file. Every header must hash to the hash its
//     node reports; seals are recovered with ecrecover.
//
// Both feed one pure Detector with Signatures; it keeps no I/O and reports
// Duplicates in a stable order.
//
// # Formats
//
//	| format  | extraData                                              | block hash covers extraData as          | a seal signs extraData as              | slot          |
//	|---------|--------------------------------------------------------|-----------------------------------------|----------------------------------------|---------------|
//	| Clique  | vanity32 ‖ signers (checkpoints) ‖ seal65              | as is                                   | without the last 65 bytes (SealHash)   | height, block |
//	| QBFT    | RLP[vanity, [validators], vote|[], round, [seals]]     | RLP[vanity, validators, vote, 0, []]    | RLP[vanity, validators, vote, round, []] | height, commit |
//	| IBFT 2.0| RLP[vanity, [validators], vote|0x80, round4, [seals]]  | RLP[vanity, validators, vote]           | RLP[vanity, validators, vote, round4]  | height, commit |
//
// (Besu QbftExtraDataCodec, IbftExtraDataCodec and BftBlockHashing; go-ethereum
// consensus/clique.) ConsensusAuto takes Clique unless mixHash is
// IstanbulDigest, and then whichever BFT format reproduces the reported hash.
// A validator's committed seals on two blocks at one height are reported
// whether or not the rounds match: the block hash excludes the round, and an
// honest validator that committed a block is locked on it.
//
// # Exit codes
//
// Report.ExitCode: 0 clean, 1 duplicates (or journal writes after a revoke)
// found, 2 incomplete: some source, range or header could not be audited
// (Report.Unaudited says which and why). Findings win over incompleteness.
//
// # Metrics
//
// The package registers none; a caller exports Report.DuplicateCount as
// fencing_audit_duplicates.
package audit
