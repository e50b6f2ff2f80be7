package consensus

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/consensus/clique"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/rlp"
)

// rpcHeader is the eth_getBlockByNumber(n, false) object, field by field.
// It is decoded here rather than with types.Header's own JSON codec so that
// a BFT header (whose hash is not keccak(RLP(header))) is read exactly as
// served and every required field is checked.
type rpcHeader struct {
	Hash             *common.Hash      `json:"hash"`
	ParentHash       *common.Hash      `json:"parentHash"`
	UncleHash        *common.Hash      `json:"sha3Uncles"`
	Coinbase         *common.Address   `json:"miner"`
	Root             *common.Hash      `json:"stateRoot"`
	TxHash           *common.Hash      `json:"transactionsRoot"`
	ReceiptHash      *common.Hash      `json:"receiptsRoot"`
	Bloom            *types.Bloom      `json:"logsBloom"`
	Difficulty       *hexutil.Big      `json:"difficulty"`
	Number           *hexutil.Big      `json:"number"`
	GasLimit         *hexutil.Uint64   `json:"gasLimit"`
	GasUsed          *hexutil.Uint64   `json:"gasUsed"`
	Time             *hexutil.Uint64   `json:"timestamp"`
	Extra            *hexutil.Bytes    `json:"extraData"`
	MixDigest        *common.Hash      `json:"mixHash"`
	Nonce            *types.BlockNonce `json:"nonce"`
	BaseFee          *hexutil.Big      `json:"baseFeePerGas"`
	WithdrawalsHash  *common.Hash      `json:"withdrawalsRoot"`
	BlobGasUsed      *hexutil.Uint64   `json:"blobGasUsed"`
	ExcessBlobGas    *hexutil.Uint64   `json:"excessBlobGas"`
	ParentBeaconRoot *common.Hash      `json:"parentBeaconBlockRoot"`
	RequestsHash     *common.Hash      `json:"requestsHash"`
}

// DecodeHeaderJSON reads one header object as served by eth_getBlockByNumber
// and returns it with the hash the endpoint reported. A JSON null is
// ErrNoBlock.
func DecodeHeaderJSON(b []byte) (*types.Header, common.Hash, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || bytes.Equal(b, []byte("null")) {
		return nil, common.Hash{}, ErrNoBlock
	}
	var r rpcHeader
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, common.Hash{}, fmt.Errorf("header is not a block object: %v", err)
	}
	var missing []string
	need := func(ok bool, name string) {
		if !ok {
			missing = append(missing, name)
		}
	}
	need(r.Hash != nil, "hash")
	need(r.ParentHash != nil, "parentHash")
	need(r.UncleHash != nil, "sha3Uncles")
	need(r.Coinbase != nil, "miner")
	need(r.Root != nil, "stateRoot")
	need(r.TxHash != nil, "transactionsRoot")
	need(r.ReceiptHash != nil, "receiptsRoot")
	need(r.Bloom != nil, "logsBloom")
	need(r.Difficulty != nil, "difficulty")
	need(r.Number != nil, "number")
	need(r.GasLimit != nil, "gasLimit")
	need(r.GasUsed != nil, "gasUsed")
	need(r.Time != nil, "timestamp")
	need(r.Extra != nil, "extraData")
	need(r.MixDigest != nil, "mixHash")
	need(r.Nonce != nil, "nonce")
	if len(missing) > 0 {
		return nil, common.Hash{}, fmt.Errorf("header lacks %v", missing)
	}
	if (*big.Int)(r.Number).Sign() < 0 || !(*big.Int)(r.Number).IsUint64() {
		return nil, common.Hash{}, fmt.Errorf("header number %v is out of range", (*big.Int)(r.Number))
	}
	if (*big.Int)(r.Difficulty).Sign() < 0 || (r.BaseFee != nil && (*big.Int)(r.BaseFee).Sign() < 0) {
		return nil, common.Hash{}, errors.New("header has a negative difficulty or base fee")
	}
	h := &types.Header{
		ParentHash:       *r.ParentHash,
		UncleHash:        *r.UncleHash,
		Coinbase:         *r.Coinbase,
		Root:             *r.Root,
		TxHash:           *r.TxHash,
		ReceiptHash:      *r.ReceiptHash,
		Bloom:            *r.Bloom,
		Difficulty:       (*big.Int)(r.Difficulty),
		Number:           (*big.Int)(r.Number),
		GasLimit:         uint64(*r.GasLimit),
		GasUsed:          uint64(*r.GasUsed),
		Time:             uint64(*r.Time),
		Extra:            *r.Extra,
		MixDigest:        *r.MixDigest,
		Nonce:            *r.Nonce,
		BaseFee:          (*big.Int)(r.BaseFee),
		WithdrawalsHash:  r.WithdrawalsHash,
		ParentBeaconRoot: r.ParentBeaconRoot,
		RequestsHash:     r.RequestsHash,
	}
	if r.BlobGasUsed != nil {
		v := uint64(*r.BlobGasUsed)
		h.BlobGasUsed = &v
	}
	if r.ExcessBlobGas != nil {
		v := uint64(*r.ExcessBlobGas)
		h.ExcessBlobGas = &v
	}
	return h, *r.Hash, nil
}

// ErrNoBlock means the endpoint answered null: it has no block at that height.
var ErrNoBlock = errors.New("endpoint has no block at this height")

// HashMismatchError means the header's fields do not hash to the hash the
// endpoint reported under any format tried: the endpoint serves a bad header.
type HashMismatchError struct {
	Number   uint64
	Reported common.Hash
	Computed map[Consensus]common.Hash
}

func (e *HashMismatchError) Error() string {
	return fmt.Sprintf("block %d: reported hash %s does not match its fields (computed %v)", e.Number, e.Reported.Hex(), e.Computed)
}

// Seal is one signature recovered from a header.
type Seal struct {
	Signer     common.Address
	SignedHash common.Hash
	Signature  []byte
}

// SealedHeader is a header whose hash was checked and whose seals were
// recovered.
type SealedHeader struct {
	Consensus Consensus
	Number    uint64
	Hash      common.Hash
	Round     uint64
	// Proposer is the Clique signer, or the coinbase for QBFT and IBFT 2.0.
	Proposer common.Address
	// Validators is the list carried in the header (BFT always, Clique on
	// checkpoint blocks).
	Validators []common.Address
	Seals      []Seal
}

// BlockHash returns the hash a node reports for h under format c: keccak of
// the header RLP for Clique, and for QBFT and IBFT 2.0 keccak of the header
// RLP with the extraData reduced to its on-chain hashing form.
func BlockHash(h *types.Header, c Consensus) (common.Hash, error) {
	switch c {
	case ConsensusClique:
		return h.Hash(), nil
	case ConsensusQBFT:
		x, err := DecodeQBFTExtra(h.Extra)
		if err != nil {
			return common.Hash{}, err
		}
		return withExtra(h, x.qbftExtraForHash(false)), nil
	case ConsensusIBFT2:
		x, err := DecodeIBFT2Extra(h.Extra)
		if err != nil {
			return common.Hash{}, err
		}
		return withExtra(h, x.ibft2ExtraForHash(false)), nil
	}
	return common.Hash{}, fmt.Errorf("no block hash rule for consensus %q", c)
}

// CommittedSealHash returns the digest a QBFT or IBFT 2.0 committed seal
// signs: keccak of the header RLP with the seal list removed and the round
// kept.
func CommittedSealHash(h *types.Header, c Consensus) (common.Hash, error) {
	switch c {
	case ConsensusQBFT:
		x, err := DecodeQBFTExtra(h.Extra)
		if err != nil {
			return common.Hash{}, err
		}
		return withExtra(h, x.qbftExtraForHash(true)), nil
	case ConsensusIBFT2:
		x, err := DecodeIBFT2Extra(h.Extra)
		if err != nil {
			return common.Hash{}, err
		}
		return withExtra(h, x.ibft2ExtraForHash(true)), nil
	}
	return common.Hash{}, fmt.Errorf("no committed seal for consensus %q", c)
}

func withExtra(h *types.Header, extra []byte) common.Hash {
	cp := *h
	cp.Extra = extra
	return cp.Hash()
}

// CliqueSealHash is clique.SealHash with the checks that make it safe on
// untrusted input: go-ethereum panics on a short extraData or on post-London
// fields a Clique header cannot carry.
func CliqueSealHash(h *types.Header) (common.Hash, error) {
	if len(h.Extra) < SealLength {
		return common.Hash{}, extraErr("clique extraData shorter than a seal")
	}
	if h.WithdrawalsHash != nil || h.BlobGasUsed != nil || h.ExcessBlobGas != nil ||
		h.ParentBeaconRoot != nil || h.RequestsHash != nil || h.BlockAccessListHash != nil || h.SlotNumber != nil {
		return common.Hash{}, errors.New("header carries post-Shanghai fields and cannot be a Clique header")
	}
	if h.Difficulty == nil || h.Number == nil {
		return common.Hash{}, errors.New("header lacks difficulty or number")
	}
	return clique.SealHash(h), nil
}

// VerifyHeader checks that h hashes to reported under format c (or, for
// ConsensusAuto, under the format its mixHash and hash select) and recovers
// every seal. The genesis block carries no seal and yields none.
func VerifyHeader(h *types.Header, reported common.Hash, c Consensus) (*SealedHeader, error) {
	return VerifyHeaderWith(h, reported, c, RecoverSigner)
}

// RecoverFunc recovers the signer of sig over hash; the chain audit passes a
// cached one.
// RecoverFunc recovers the signer of sig over hash (VerifyHeaderWith takes
// one so a caller can cache recoveries).
type RecoverFunc func(hash common.Hash, sig []byte) (common.Address, error)

// VerifyHeaderWith is VerifyHeader with recover as the signer recovery.
func VerifyHeaderWith(h *types.Header, reported common.Hash, c Consensus, RecoverSigner RecoverFunc) (*SealedHeader, error) {
	if h == nil || h.Number == nil || h.Difficulty == nil {
		return nil, errors.New("header lacks number or difficulty")
	}
	number := h.Number.Uint64()
	candidates := []Consensus{c}
	if c == ConsensusAuto {
		if h.MixDigest == IstanbulDigest {
			candidates = []Consensus{ConsensusQBFT, ConsensusIBFT2}
		} else {
			candidates = []Consensus{ConsensusClique}
		}
	}
	var (
		chosen   Consensus
		firstErr error
		computed = map[Consensus]common.Hash{}
	)
	for _, cand := range candidates {
		got, err := BlockHash(h, cand)
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("block %d as %s: %w", number, cand, err)
			}
			continue
		}
		if got == reported {
			chosen = cand
			break
		}
		computed[cand] = got
	}
	if chosen == "" {
		if len(computed) > 0 {
			return nil, &HashMismatchError{Number: number, Reported: reported, Computed: computed}
		}
		return nil, firstErr
	}
	out := &SealedHeader{Consensus: chosen, Number: number, Hash: reported}
	switch chosen {
	case ConsensusClique:
		x, err := DecodeCliqueExtra(h.Extra)
		if err != nil {
			return nil, fmt.Errorf("block %d: %w", number, err)
		}
		out.Validators = x.Signers
		if number == 0 {
			return out, nil
		}
		sh, err := CliqueSealHash(h)
		if err != nil {
			return nil, fmt.Errorf("block %d: %w", number, err)
		}
		signer, err := RecoverSigner(sh, x.Seal)
		if err != nil {
			return nil, fmt.Errorf("block %d: clique seal: %w", number, err)
		}
		out.Proposer = signer
		out.Seals = []Seal{{Signer: signer, SignedHash: sh, Signature: bytes.Clone(x.Seal)}}
	case ConsensusQBFT, ConsensusIBFT2:
		var x *BFTExtra
		var sealForm []byte
		if chosen == ConsensusQBFT {
			x, _ = DecodeQBFTExtra(h.Extra) // decoded without error above
			sealForm = x.qbftExtraForHash(true)
		} else {
			x, _ = DecodeIBFT2Extra(h.Extra)
			sealForm = x.ibft2ExtraForHash(true)
		}
		out.Round = x.Round
		out.Proposer = h.Coinbase
		out.Validators = x.Validators
		if number == 0 {
			return out, nil
		}
		sh := withExtra(h, sealForm)
		for i, s := range x.Seals {
			signer, err := RecoverSigner(sh, s)
			if err != nil {
				return nil, fmt.Errorf("block %d: committed seal %d: %w", number, i, err)
			}
			out.Seals = append(out.Seals, Seal{Signer: signer, SignedHash: sh, Signature: bytes.Clone(s)})
		}
	}
	return out, nil
}

// RecoverSigner returns the address whose key made sig (R ‖ S ‖ V, V in
// {0,1} or {27,28}) over hash.
func RecoverSigner(hash common.Hash, sig []byte) (common.Address, error) {
	if len(sig) != SealLength {
		return common.Address{}, fmt.Errorf("signature has %d bytes, want 65", len(sig))
	}
	s := bytes.Clone(sig)
	if s[64] >= 27 {
		s[64] -= 27
	}
	if s[64] > 1 {
		return common.Address{}, fmt.Errorf("signature recovery id %d is not 0 or 1", sig[64])
	}
	pub, err := crypto.Ecrecover(hash[:], s)
	if err != nil {
		return common.Address{}, err
	}
	return common.BytesToAddress(crypto.Keccak256(pub[1:])[12:]), nil
}

// DecodeHeaderRLP reads a header from its RLP encoding (as in the block RLP
// of test fixtures).
func DecodeHeaderRLP(b []byte) (*types.Header, error) {
	var h types.Header
	if err := rlp.DecodeBytes(b, &h); err != nil {
		return nil, err
	}
	return &h, nil
}
