package sidecar

import (
	"bytes"
	"encoding/hex"
	"net/http"
	"strings"

	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/fencing"
)

// Web3Signer's eth1 API, as Web3Signer serves it:
//
//	GET  /api/v1/eth1/publicKeys            ["0x<64-byte uncompressed key, no 04 prefix>", …]
//	POST /api/v1/eth1/sign/{identifier}     {"data":"0x…"} → text/plain "0x<R‖S‖V>", V 27 or 28
//
// The signature is over keccak256(data); identifier is a listed public key or
// the key's address. /upcheck and /healthcheck are with the health routes.
//
// When data is exactly the signing form of a block seal (go-ethereum's
// CliqueRLP of a Clique header, a QBFT header with its seal list emptied and
// its round kept, an IBFT 2.0 header with extraData [vanity, validators,
// vote, round]), the seal's HRS and digest are derived from it and the
// signature goes through the watermark like the typed helpers
// (Signer.SignHRS). Other data that decodes as a block header is refused.
// Any other data carries no height, round or step, so only the epoch fence
// applies (Signer.SignDigest): the lease must be held and, in strict mode,
// confirmed in etcd, as with Web3Signer's own eth1 signing.
//
// Refusals answer 412 with {"code","message"} (Web3Signer answers 412 for
// slashing-protection refusals); bad input, including an unknown identifier,
// answers 400 bad_request (Web3Signer answers 404 for an unknown identifier).

// Eth1SignRequest is the body of POST /api/v1/eth1/sign/{identifier}.
type Eth1SignRequest struct {
	Data hexData `json:"data"`
}

func (s *Server) web3signerRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/eth1/publicKeys", s.eth1PublicKeys)
	mux.HandleFunc("POST /api/v1/eth1/sign/{identifier}", s.eth1Sign)
}

func (s *Server) eth1PublicKeys(w http.ResponseWriter, r *http.Request) {
	keys := []string{}
	for _, v := range s.signer.Validators() {
		keys = append(keys, hexutil.Encode(v.Key.PublicKey()))
	}
	api.WriteJSON(w, http.StatusOK, keys)
}

func (s *Server) eth1Sign(w http.ResponseWriter, r *http.Request) {
	var req Eth1SignRequest
	if err := api.DecodeJSON(w, r, &req); err != nil {
		api.WriteError(w, err)
		return
	}
	validator, digest, err := s.eth1Request(r.PathValue("identifier"), req)
	if err != nil {
		api.WriteError(w, err)
		return
	}
	sl, isSeal, err := headerSigningForm(req.Data)
	if err != nil {
		api.WriteError(w, err)
		return
	}
	var res SignResult
	if isSeal {
		res, err = s.signer.SignHRS(r.Context(), validator, sl.HRS, sl.Digest)
	} else {
		res, err = s.signer.SignDigest(r.Context(), validator, digest)
	}
	if err != nil {
		s.refuse(w, r, err)
		return
	}
	sig := bytes.Clone(res.Signature)
	sig[crypto.RecoveryIDOffset] += 27 // Web3Signer (web3j) writes V as 27 or 28
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte(hexutil.Encode(sig)))
}

// eth1Request checks a decoded sign request and returns the validator that
// identifier names and the digest to sign, keccak256(data).
func (s *Server) eth1Request(identifier string, req Eth1SignRequest) (fencing.ValidatorID, fencing.Digest, error) {
	if len(req.Data) == 0 {
		return "", fencing.Digest{}, fencing.Errorf(fencing.CodeBadRequest, `request body needs "data": the hex bytes whose keccak256 is signed`)
	}
	id := strings.ToLower(strings.TrimPrefix(strings.TrimPrefix(identifier, "0x"), "0X"))
	for _, v := range s.signer.Validators() {
		if id == hex.EncodeToString(v.Key.PublicKey()) || id == hex.EncodeToString(v.Key.Address[:]) {
			return v.ID, fencing.Digest(crypto.Keccak256Hash(req.Data)), nil
		}
	}
	return "", fencing.Digest{}, fencing.Errorf(fencing.CodeBadRequest, "this sidecar has no key with public key or address %.140q; GET /api/v1/eth1/publicKeys lists its keys", identifier)
}
