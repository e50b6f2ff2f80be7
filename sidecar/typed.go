package sidecar

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/rlp"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/consensus"
	"github.com/validator-fencing/fencing/internal/fencing"
)

// Typed helpers derive the HRS and the digest of a block seal from the
// header itself, so the watermark protects seals without trusting the caller
// to name the HRS (docs/sidecar.md):
//
//	POST /v1/sign/clique        HRS (number, 0, block),      digest = EIP-225 seal hash
//	POST /v1/sign/qbft-commit   HRS (number, round, commit), digest = Besu's QBFT committed-seal hash
//	POST /v1/sign/ibft2-commit  HRS (number, round, commit), digest = Besu's IBFT 2.0 committed-seal hash
//
// Header hashing is internal/consensus's (the chain audit recovers seals with
// the same code), never a second copy.

// HeaderSignRequest is the typed helpers' request: the RLP of a block header
// as hex (0x optional).
type HeaderSignRequest struct {
	Validator fencing.ValidatorID `json:"validator"`
	Header    hexData             `json:"header"`
}

// SealResponse is a typed helper's answer: the signature, its epoch, and the
// HRS and digest the sidecar derived from the header.
type SealResponse struct {
	SignResponse
	fencing.HRS
	Digest fencing.Digest `json:"digest"`
}

// seal is one header signature: where it sits in the validator's HRS order
// and the digest it signs.
type seal struct {
	HRS    fencing.HRS
	Digest fencing.Digest
}

func (s *Server) typedRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/sign/clique", s.signHeader(cliqueSeal))
	mux.HandleFunc("POST /v1/sign/qbft-commit", s.signHeader(qbftCommitSeal))
	mux.HandleFunc("POST /v1/sign/ibft2-commit", s.signHeader(ibft2CommitSeal))
}

// signHeader serves one typed helper: derive reads the seal from the header.
func (s *Server) signHeader(derive func(*types.Header) (seal, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req HeaderSignRequest
		if err := api.DecodeJSON(w, r, &req); err != nil {
			api.WriteError(w, err)
			return
		}
		sl, err := decodeHeaderSeal(req.Header, derive)
		if err != nil {
			api.WriteError(w, err)
			return
		}
		res, err := s.signer.SignHRS(r.Context(), req.Validator, sl.HRS, sl.Digest)
		if err != nil {
			s.refuse(w, r, err)
			return
		}
		api.WriteJSON(w, http.StatusOK, SealResponse{SignResponse: signResponse(res), HRS: sl.HRS, Digest: sl.Digest})
	}
}

func signResponse(res SignResult) SignResponse {
	return SignResponse{Signature: "0x" + hex.EncodeToString(res.Signature), Epoch: res.Epoch}
}

// decodeHeaderSeal decodes raw as a header RLP and derives its seal.
func decodeHeaderSeal(raw []byte, derive func(*types.Header) (seal, error)) (seal, error) {
	h, err := decodeHeader(raw)
	if err != nil {
		return seal{}, err
	}
	return derive(h)
}

// decodeHeader reads the RLP of a block header that can carry a seal: number
// 1 or above (the genesis block is never sealed) and within uint64.
func decodeHeader(raw []byte) (*types.Header, error) {
	if len(raw) == 0 {
		return nil, fencing.Errorf(fencing.CodeBadRequest, "header is empty: send the RLP of the block header as hex")
	}
	h, err := consensus.DecodeHeaderRLP(raw)
	if err != nil {
		return nil, fencing.Errorf(fencing.CodeBadRequest, "header is not the RLP of a block header: %v", err)
	}
	if h.Number.Sign() <= 0 || !h.Number.IsUint64() {
		return nil, fencing.Errorf(fencing.CodeBadRequest, "header number %v is not a block that carries a seal (want 1 to 2^64-1)", h.Number)
	}
	return h, nil
}

// cliqueSeal is the Clique (EIP-225) seal of h: HRS (number, 0, block) over
// the seal hash, which leaves out the last 65 bytes of extraData (the seal).
func cliqueSeal(h *types.Header) (seal, error) {
	if h.MixDigest == consensus.IstanbulDigest {
		return seal{}, fencing.Errorf(fencing.CodeBadRequest, "header has the Istanbul mixHash of a QBFT or IBFT 2.0 block, not a Clique header; use /v1/sign/qbft-commit")
	}
	d, err := consensus.CliqueSealHash(h)
	if err != nil {
		return seal{}, fencing.Errorf(fencing.CodeBadRequest, "header is not a Clique header: %v", err)
	}
	return seal{HRS: fencing.HRS{Height: h.Number.Uint64(), Step: fencing.StepBlock}, Digest: fencing.Digest(d)}, nil
}

// qbftCommitSeal is the QBFT committed seal of h: HRS (number, round,
// commit) over keccak of the header whose extraData has the seal list
// emptied and the round kept.
func qbftCommitSeal(h *types.Header) (seal, error) {
	return bftCommitSeal(h, consensus.ConsensusQBFT, consensus.DecodeQBFTExtra)
}

// ibft2CommitSeal is the IBFT 2.0 committed seal of h: HRS (number, round,
// commit) over keccak of the header whose extraData is
// RLP[vanity, validators, vote, round] (no seal list).
func ibft2CommitSeal(h *types.Header) (seal, error) {
	return bftCommitSeal(h, consensus.ConsensusIBFT2, consensus.DecodeIBFT2Extra)
}

func bftCommitSeal(h *types.Header, c consensus.Consensus, decode func([]byte) (*consensus.BFTExtra, error)) (seal, error) {
	if h.MixDigest != consensus.IstanbulDigest {
		return seal{}, fencing.Errorf(fencing.CodeBadRequest, "header mixHash %s is not the Istanbul digest every %s block carries", h.MixDigest, c)
	}
	x, err := decode(h.Extra)
	if err != nil {
		return seal{}, fencing.Errorf(fencing.CodeBadRequest, "header extraData is not %s extraData: %v", c, err)
	}
	d, err := consensus.CommittedSealHash(h, c)
	if err != nil {
		return seal{}, fencing.Errorf(fencing.CodeBadRequest, "header extraData is not %s extraData: %v", c, err)
	}
	return seal{HRS: fencing.HRS{Height: h.Number.Uint64(), Round: x.Round, Step: fencing.StepCommit}, Digest: fencing.Digest(d)}, nil
}

// cliqueSigningForm reads data as go-ethereum's clique.CliqueRLP(header):
// the header with the 65-byte seal cut off extraData, which is what geth
// hands an external signer to seal a block. Its keccak is the seal hash; the
// header must re-encode to exactly data, so the digest signed is keccak(data)
// as geth expects and also the header's EIP-225 seal hash.
func cliqueSigningForm(data []byte) (seal, error) {
	h, err := decodeHeader(data)
	if err != nil {
		return seal{}, err
	}
	h.Extra = append(bytes.Clone(h.Extra), make([]byte, crypto.SignatureLength)...) // where the seal goes
	if _, err := consensus.DecodeCliqueExtra(h.Extra); err != nil {
		// extraData must be vanity ‖ signers: a sealed header is not a signing form.
		return seal{}, fencing.Errorf(fencing.CodeBadRequest, "clique signing form: %v", err)
	}
	sl, err := cliqueSeal(h)
	if err != nil {
		return seal{}, err
	}
	if sl.Digest != fencing.Digest(crypto.Keccak256Hash(data)) {
		return seal{}, fencing.Errorf(fencing.CodeBadRequest, "clique header is not in canonical CliqueRLP form (it does not re-encode to the bytes sent)")
	}
	return sl, nil
}

// qbftSigningForm reads data as the bytes a QBFT committed seal signs: the
// header RLP whose extraData has an empty seal list and the round kept; its
// keccak must be the header's committed-seal hash.
func qbftSigningForm(data []byte) (seal, error) {
	h, err := decodeHeader(data)
	if err != nil {
		return seal{}, err
	}
	if x, err := consensus.DecodeQBFTExtra(h.Extra); err == nil && len(x.Seals) > 0 {
		return seal{}, fencing.Errorf(fencing.CodeBadRequest, "QBFT header already carries committed seals; the signing form has none")
	}
	sl, err := qbftCommitSeal(h)
	if err != nil {
		return seal{}, err
	}
	if sl.Digest != fencing.Digest(crypto.Keccak256Hash(data)) {
		return seal{}, fencing.Errorf(fencing.CodeBadRequest, "QBFT header is not in its committed-seal signing form")
	}
	return sl, nil
}

// ibft2SigningForm reads data as the bytes an IBFT 2.0 committed seal signs:
// the header RLP whose extraData is RLP[vanity, validators, vote, round]
// (four items: the seal list is not there at all); its keccak must be the
// header's committed-seal hash.
func ibft2SigningForm(data []byte) (seal, error) {
	h, err := decodeHeader(data)
	if err != nil {
		return seal{}, err
	}
	items, err := rlp.SplitListValues(h.Extra)
	if err != nil || len(items) != 4 {
		return seal{}, fencing.Errorf(fencing.CodeBadRequest, "IBFT 2.0 signing form has extraData of four items (vanity, validators, vote, round)")
	}
	// The committed-seal form is the extraData with its seal list left out.
	h.Extra, _ = rlp.MergeListValues(append(items, []byte{0xc0}))
	sl, err := ibft2CommitSeal(h)
	if err != nil {
		return seal{}, err
	}
	if sl.Digest != fencing.Digest(crypto.Keccak256Hash(data)) {
		return seal{}, fencing.Errorf(fencing.CodeBadRequest, "IBFT 2.0 header is not in its committed-seal signing form")
	}
	return sl, nil
}

// headerSigningForm recognises data that is exactly the signing form of a
// Clique, QBFT or IBFT 2.0 seal (keccak256(data) is the seal's digest), so a
// caller of a bare-digest API still gets the watermark. Data that decodes as
// a block header but is none of these is refused: signed as a bare digest it
// would bypass the watermark.
func headerSigningForm(data []byte) (seal, bool, error) {
	for _, form := range []func([]byte) (seal, error){cliqueSigningForm, qbftSigningForm, ibft2SigningForm} {
		if sl, err := form(data); err == nil {
			return sl, true, nil
		}
	}
	if _, err := consensus.DecodeHeaderRLP(data); err == nil {
		return seal{}, false, fencing.Errorf(fencing.CodeBadRequest, "data is a block header but not the signing form of a Clique, QBFT or IBFT 2.0 seal; the sidecar does not sign a block header as a bare digest (it would bypass the watermark): use the typed endpoints /v1/sign/clique, /v1/sign/qbft-commit or /v1/sign/ibft2-commit")
	}
	return seal{}, false, nil
}

// hexData is bytes written as a hex JSON string, 0x optional; its errors are
// bad_request sentences.
type hexData []byte

// MarshalText writes 0x-prefixed hex.
func (d hexData) MarshalText() ([]byte, error) { return []byte("0x" + hex.EncodeToString(d)), nil }

// UnmarshalJSON reads a hex string.
func (d *hexData) UnmarshalJSON(b []byte) error {
	v, err := decodeHex("hex field", b)
	*d = v
	return err
}

// decodeHex reads the JSON string b as hex (0x optional) and names what in
// its bad_request errors.
func decodeHex(what string, b []byte) ([]byte, error) {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fencing.Errorf(fencing.CodeBadRequest, "%s must be a hex string, got %.40s", what, b)
	}
	v, err := hex.DecodeString(strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X"))
	if err != nil {
		return nil, fencing.Errorf(fencing.CodeBadRequest, "%s is not hex: %v", what, strings.TrimPrefix(err.Error(), "encoding/hex: "))
	}
	return v, nil
}
