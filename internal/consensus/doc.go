// Package consensus decodes and hashes the block headers validators sign:
// Clique (EIP-225) seals, and the extraData, committed-seal hash and block
// hash of Hyperledger Besu's QBFT and IBFT 2.0. It is pure (no I/O): the
// sidecar's typed signing endpoints and the duplicate-signature audit share
// it, and it is checked against real headers in internal/audit's tests.
package consensus
