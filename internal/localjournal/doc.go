// Package localjournal is the sidecar's local signing record: every
// signature the sidecar gives is a record here, durable (fdatasync'd) before
// the signature leaves the process (invariant 6 of docs/architecture.md). It
// is the one reader and the one writer of the format: the sidecar writes and
// reads it with Open and Append, the audit reads it with ReadAll, and both
// apply the rules below.
//
// # Files
//
// One journal per sidecar, shared by all its validators, in
// <state-dir>/journal/:
//
//	00000000000000000001.seg   segments, named by the seq of their first record
//	00000000000000028114.seg
//	checkpoint                 every validator's watermark at the last rotation
//	*.tmp                      a segment or checkpoint being made (removed at start)
//
// Every file is JSON Lines. Each line is one JSON object whose last member is
// "crc": the CRC-32C (Castagnoli) of the line's bytes before `,"crc"`, in 8
// lowercase hex digits. Line 1 of a file is its header; a line is at most
// MaxLine bytes. A segment:
//
//	{"format":"fencing-local-journal","version":1,"kind":"segment","sidecar":"validator-0","first_seq":1,"crc":"…"}
//	{"seq":1,"validator":"0x7E5F…5Bdf","hrs":{"height":100,"round":0,"step":"commit"},"digest":"0xaa…","epoch":3,"sidecar":"validator-0","at":"2026-03-01T12:00:00.123Z","crc":"…"}
//	{"seq":2,…}
//	NUL bytes up to the preallocated size
//
// A checkpoint is a header with "kind":"checkpoint", "next_seq" (it covers
// every record below it) and "records" (how many lines follow), then the
// highest record of each validator, one per line, by validator name.
//
// A record's seq counts the journal's records from 1 without gaps, across
// segments. Fields: the validator ID, its HRS, the signed digest, the
// lease's epoch (≥ 1), the sidecar, and the signing time (UTC). A line is
// read only if it is exactly what the writer writes for the record it
// decodes to (member order, number and time format, lowercase hex), so a
// hand-edited line is never taken for a record.
//
// # Rules
//
// The writer refuses to write, and the reader calls corrupt, anything that
// breaks them:
//
//  1. Every header is of this format and version 1 (another version, or a
//     file of the old one-file-per-validator format, <validator>.jsonl, is
//     refused with a message saying so; there is no conversion).
//  2. Every header and record names the journal's sidecar (a state
//     directory is never shared or swapped between sidecars).
//  3. Every record passes its checksum and field checks, and its seq is the
//     one after the previous record's; a segment's first_seq is its name and
//     the seq after the previous segment's last record.
//  4. Each validator's HRS strictly increase from record to record (an HRS
//     is signed once; re-signing it with the same digest writes nothing).
//  5. The segment starting at the checkpoint's next_seq exists, and the
//     checkpoint holds, for every validator with a record it covers (seq
//     below next_seq), a record at or above it: a checkpoint older than its
//     segments, a segment missing, or records lost are refused.
//  6. After the last record of a segment come only NUL bytes (the
//     preallocated space), except for a torn tail in the last segment.
//
// A torn tail is what a crash during a write leaves: the first line that is
// not a whole record is unterminated, or holds a NUL byte (a sector the
// crash left unwritten), in the last segment. None of it was acknowledged:
// the sync that would cover it never returned, and every later byte was
// written after it, so no later sync returned either. Open cuts it off (it
// overwrites it with NUL bytes and syncs); the audit reports it as a
// warning. Any other line that is not a valid record — a whole line that
// fails its checksum or its fields, an out-of-order record, a record of
// another sidecar — is corruption: Open refuses (the sidecar does not
// start, and never resets the watermark), and the audit reports the line as
// file:line and goes on reading to collect the evidence.
//
// # Writing
//
// Append hands the entry to one committer goroutine. The committer takes
// every append queued while its last write was in flight (different
// validators signing at once), writes them with one write, syncs once with
// fdatasync, and only then answers each: concurrent appends share one sync,
// and every record is durable before its signature can leave. A failed
// write or sync breaks the journal: every later Append and every check of
// the sidecar fails until the sidecar restarts and rereads the files.
//
// Segments are preallocated with NUL bytes (as etcd's WAL does), so an
// fdatasync flushes data only. When the next record does not fit, the
// committer rotates: it syncs the full segment, creates the next one, writes
// a checkpoint of every validator's highest record covering everything
// before the new segment (synced, renamed into place, directory synced),
// and only then deletes segments beyond Options.RetainSegments. Watermarks never move backwards: a checkpoint
// holds the maximum of the previous checkpoint and every record since.
//
// # Reading
//
// Open reads the checkpoint and the segments from the one holding the first
// record the checkpoint does not cover: at most two segments, whatever the
// journal's history, so memory and time at start are bounded (OpenInfo says
// what it read). It keeps each validator's highest record and the last
// Options.Remember signatures (for idempotent re-signing). It does not read
// the older segments the checkpoint covers (the watermarks do not need
// them); damage there is the audit's to find. ReadAll reads every retained
// file for the audit: the records only the checkpoint still holds (their
// segments were deleted), then every segment's records.
//
// What the journal cannot see: a whole state directory restored from an
// older backup is consistent in itself. The quorum watermark (strict mode,
// and lease mode's reports) still holds the new holder above what was
// signed; never restore a state directory to get a sidecar going.
package localjournal
