package consensus

import (
	"errors"
	"fmt"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/rlp"
)

// Consensus names a sealing format.
type Consensus string

// The formats the chain audit understands. ConsensusAuto picks one per header:
// a mixHash equal to IstanbulDigest means QBFT or IBFT 2.0 (whichever
// reproduces the reported block hash), anything else means Clique.
const (
	ConsensusAuto   Consensus = "auto"
	ConsensusClique Consensus = "clique"
	ConsensusQBFT   Consensus = "qbft"
	ConsensusIBFT2  Consensus = "ibft2"
)

// ParseConsensus accepts auto, clique, qbft or ibft2.
func ParseConsensus(s string) (Consensus, error) {
	switch c := Consensus(s); c {
	case ConsensusAuto, ConsensusClique, ConsensusQBFT, ConsensusIBFT2:
		return c, nil
	}
	return "", fmt.Errorf("consensus %q is not one of auto, clique, qbft, ibft2", s)
}

// IstanbulDigest is the mixHash of every QBFT and IBFT 2.0 block
// ("ctical byzantine fault tolerance" in ASCII).
var IstanbulDigest = common.HexToHash("0x63746963616c2062797a616e74696e65206661756c7420746f6c6572616e6365")

// Lengths fixed by the formats: the extraData vanity and a seal (R‖S‖V).
const (
	VanityLength    = 32
	SealLength      = 65
	addressLength   = 20
	ibft2RoundBytes = 4
	// maxExtraItems bounds what a decoder looks at; real extraData has
	// at most a few dozen validators.
	maxListItems = 4096
)

// ErrExtraData is wrapped by every extraData decoding error.
var ErrExtraData = errors.New("malformed extraData")

func extraErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrExtraData, fmt.Sprintf(format, args...))
}

// Vote is a validator vote carried in BFT extraData.
type Vote struct {
	Recipient common.Address `json:"recipient"`
	Add       bool           `json:"add"`
}

// BFTExtra is decoded QBFT or IBFT 2.0 extraData. The raw RLP items are kept
// so that the hashing forms re-encode exactly what the proposer wrote.
type BFTExtra struct {
	Vanity     []byte
	Validators []common.Address
	Vote       *Vote
	Round      uint64
	Seals      [][]byte

	rawVanity, rawValidators, rawVote, rawRound []byte
}

// DecodeQBFTExtra decodes Besu's QBFT extraData,
// RLP[vanity, [validators], vote, round, [committed seals]], where vote is an
// empty list or [recipient, 0xff (add) | empty (drop)] and round is an RLP
// scalar (QbftExtraDataCodec.decodeRaw).
func DecodeQBFTExtra(b []byte) (*BFTExtra, error) {
	items, err := splitExtra(b)
	if err != nil {
		return nil, err
	}
	x := &BFTExtra{rawVanity: items[0], rawValidators: items[1], rawVote: items[2], rawRound: items[3]}
	if err := x.decodeCommon(items); err != nil {
		return nil, err
	}
	// Vote: an empty list means no vote.
	content, rest, err := rlp.SplitList(items[2])
	if err != nil || len(rest) != 0 {
		return nil, extraErr("qbft vote must be a list")
	}
	if len(content) > 0 {
		v, err := decodeVoteList(content, true)
		if err != nil {
			return nil, err
		}
		x.Vote = v
	}
	// Round: a canonical scalar of at most 4 bytes (Besu readIntScalar).
	rb, rest, err := rlp.SplitString(items[3])
	if err != nil || len(rest) != 0 {
		return nil, extraErr("qbft round must be an RLP string")
	}
	if len(rb) > 4 || (len(rb) > 0 && rb[0] == 0) {
		return nil, extraErr("qbft round must be a scalar of at most 4 bytes without leading zeros, got %d bytes", len(rb))
	}
	if len(rb) == 1 && rb[0] < 0x80 && items[3][0] != rb[0] {
		return nil, extraErr("qbft round is not canonically encoded")
	}
	for _, c := range rb {
		x.Round = x.Round<<8 | uint64(c)
	}
	return x, nil
}

// DecodeIBFT2Extra decodes Besu's IBFT 2.0 extraData,
// RLP[vanity, [validators], vote, round, [committed seals]], where vote is the
// empty string (no vote) or [recipient, 0xff (add) | 0x00 (drop)] and round is
// exactly 4 bytes (IbftExtraDataCodec.decodeRaw).
func DecodeIBFT2Extra(b []byte) (*BFTExtra, error) {
	items, err := splitExtra(b)
	if err != nil {
		return nil, err
	}
	x := &BFTExtra{rawVanity: items[0], rawValidators: items[1], rawVote: items[2], rawRound: items[3]}
	if err := x.decodeCommon(items); err != nil {
		return nil, err
	}
	k, content, rest, err := rlp.Split(items[2])
	if err != nil || len(rest) != 0 {
		return nil, extraErr("ibft2 vote is not one RLP item")
	}
	switch {
	case k == rlp.String && len(content) == 0:
		// no vote
	case k == rlp.List:
		v, err := decodeVoteList(content, false)
		if err != nil {
			return nil, err
		}
		x.Vote = v
	default:
		return nil, extraErr("ibft2 vote must be the empty string or a list")
	}
	rb, rest, err := rlp.SplitString(items[3])
	if err != nil || len(rest) != 0 || len(rb) != ibft2RoundBytes {
		return nil, extraErr("ibft2 round must be a 4-byte string")
	}
	for _, c := range rb {
		x.Round = x.Round<<8 | uint64(c)
	}
	return x, nil
}

func splitExtra(b []byte) ([][]byte, error) {
	if len(b) == 0 {
		return nil, extraErr("empty")
	}
	k, _, rest, err := rlp.Split(b)
	if err != nil {
		return nil, extraErr("%v", err)
	}
	if k != rlp.List || len(rest) != 0 {
		return nil, extraErr("not a single RLP list")
	}
	items, err := rlp.SplitListValues(b)
	if err != nil {
		return nil, extraErr("%v", err)
	}
	if len(items) != 5 {
		return nil, extraErr("want 5 items (vanity, validators, vote, round, seals), got %d", len(items))
	}
	return items, nil
}

// decodeCommon reads vanity, validators and seals, which both formats share.
func (x *BFTExtra) decodeCommon(items [][]byte) error {
	v, rest, err := rlp.SplitString(items[0])
	if err != nil || len(rest) != 0 {
		return extraErr("vanity must be an RLP string")
	}
	x.Vanity = v
	vals, err := splitStrings(items[1], "validators", addressLength)
	if err != nil {
		return err
	}
	for _, a := range vals {
		x.Validators = append(x.Validators, common.BytesToAddress(a))
	}
	seals, err := splitStrings(items[4], "committed seals", SealLength)
	if err != nil {
		return err
	}
	x.Seals = seals
	return nil
}

// splitStrings reads a list of strings of exactly size bytes each.
func splitStrings(item []byte, what string, size int) ([][]byte, error) {
	content, rest, err := rlp.SplitList(item)
	if err != nil || len(rest) != 0 {
		return nil, extraErr("%s must be a list", what)
	}
	var out [][]byte
	for len(content) > 0 {
		if len(out) == maxListItems {
			return nil, extraErr("%s has more than %d entries", what, maxListItems)
		}
		s, r, err := rlp.SplitString(content)
		if err != nil {
			return nil, extraErr("%s entry %d: %v", what, len(out), err)
		}
		if len(s) != size {
			return nil, extraErr("%s entry %d has %d bytes, want %d", what, len(out), len(s), size)
		}
		out = append(out, s)
		content = r
	}
	return out, nil
}

// decodeVoteList reads [recipient, type]. QBFT writes a drop as the empty
// string; IBFT 2.0 writes it as the byte 0x00; both write an add as 0xff.
func decodeVoteList(content []byte, qbft bool) (*Vote, error) {
	addr, rest, err := rlp.SplitString(content)
	if err != nil || len(addr) != addressLength {
		return nil, extraErr("vote recipient must be a 20-byte address")
	}
	t, rest, err := rlp.SplitString(rest)
	if err != nil || len(rest) != 0 {
		return nil, extraErr("vote must be [recipient, type]")
	}
	v := &Vote{Recipient: common.BytesToAddress(addr)}
	switch {
	case len(t) == 1 && t[0] == 0xff:
		v.Add = true
	case qbft && len(t) == 0:
	case !qbft && len(t) == 1 && t[0] == 0x00:
	default:
		return nil, extraErr("vote type %x is neither add nor drop", t)
	}
	return v, nil
}

// qbftExtraForHash re-encodes x with the seal list emptied. With keepRound
// it is the committed-seal form; without, the round is 0 and it is the form
// the on-chain block hash covers (QbftExtraDataCodec EXCLUDE_COMMIT_SEALS and
// EXCLUDE_COMMIT_SEALS_AND_ROUND_NUMBER).
func (x *BFTExtra) qbftExtraForHash(keepRound bool) []byte {
	round := []byte{0x80}
	if keepRound {
		round = x.rawRound
	}
	out, _ := rlp.MergeListValues([][]byte{x.rawVanity, x.rawValidators, x.rawVote, round, {0xc0}})
	return out
}

// ibft2ExtraForHash is the IBFT 2.0 counterpart: the committed-seal form is
// RLP[vanity, validators, vote, round] and the on-chain form
// RLP[vanity, validators, vote] (IbftExtraDataCodec, BftBlockHashing).
func (x *BFTExtra) ibft2ExtraForHash(keepRound bool) []byte {
	items := [][]byte{x.rawVanity, x.rawValidators, x.rawVote}
	if keepRound {
		items = append(items, x.rawRound)
	}
	out, _ := rlp.MergeListValues(items)
	return out
}

// CliqueExtra is decoded Clique (EIP-225) extraData:
// vanity32 ‖ signers (checkpoint blocks only) ‖ 65-byte seal.
type CliqueExtra struct {
	Vanity  []byte
	Signers []common.Address
	Seal    []byte
}

// DecodeCliqueExtra splits Clique extraData. Signers is filled only when the
// middle part is a whole number of addresses.
func DecodeCliqueExtra(b []byte) (*CliqueExtra, error) {
	if len(b) < VanityLength+SealLength {
		return nil, extraErr("clique extraData has %d bytes, want at least %d (vanity + seal)", len(b), VanityLength+SealLength)
	}
	mid := b[VanityLength : len(b)-SealLength]
	x := &CliqueExtra{Vanity: b[:VanityLength], Seal: b[len(b)-SealLength:]}
	if len(mid)%addressLength != 0 {
		return nil, extraErr("clique signer list has %d bytes, not a multiple of 20", len(mid))
	}
	for i := 0; i < len(mid); i += addressLength {
		x.Signers = append(x.Signers, common.BytesToAddress(mid[i:i+addressLength]))
	}
	return x, nil
}
