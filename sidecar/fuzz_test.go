package sidecar

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"testing"

	"github.com/ethereum/go-ethereum/accounts"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/consensus/clique"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/consensus"
	"github.com/validator-fencing/fencing/internal/fencing"
)

// Fuzz targets for every request decoder of the signing surfaces. Seed
// corpora live in testdata/fuzz/<FuzzName>/ (real Rinkeby and Besu headers
// from internal/audit/testdata/real in the forms each surface receives, and
// edge cases). The properties: a decoder never panics, every rejection is
// bad_request, and what it accepts is exactly what the surface promises to
// sign.

// decodeBody runs api.DecodeJSON on body as the handlers do.
func decodeBody(body []byte, v any) error {
	return api.DecodeJSON(httptest.NewRecorder(), httptest.NewRequest("POST", "/", bytes.NewReader(body)), v)
}

func wantBadRequest(t *testing.T, what string, err error) {
	t.Helper()
	if c := fencing.CodeOf(err); c != fencing.CodeBadRequest {
		t.Fatalf("%s rejected with %q (%v), want bad_request", what, c, err)
	}
}

// FuzzSignRequest: the native POST /v1/sign body.
func FuzzSignRequest(f *testing.F) {
	f.Add([]byte(`{"validator":"v","height":1,"round":0,"step":"commit","digest":"0x0101010101010101010101010101010101010101010101010101010101010101"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var req SignRequest
		if err := decodeBody(body, &req); err != nil {
			wantBadRequest(t, "SignRequest", err)
			return
		}
		// What was accepted survives a round trip unchanged.
		b, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		var again SignRequest
		if err := decodeBody(b, &again); err != nil || again != req {
			t.Fatalf("round trip of %+v = %+v, %v", req, again, err)
		}
	})
}

// FuzzHeaderSeal: the typed helpers' header decoding, for both seals.
func FuzzHeaderSeal(f *testing.F) {
	f.Add([]byte{0xc0})
	f.Fuzz(func(t *testing.T, raw []byte) {
		if sl, err := decodeHeaderSeal(raw, cliqueSeal); err != nil {
			wantBadRequest(t, "clique header", err)
		} else {
			h, _ := decodeHeader(raw)
			if sl.HRS != (fencing.HRS{Height: h.Number.Uint64(), Step: fencing.StepBlock}) || sl.HRS.Height == 0 {
				t.Fatalf("clique seal HRS %v for header %d", sl.HRS, h.Number)
			}
			if want := clique.SealHash(h); sl.Digest != fencing.Digest(want) {
				t.Fatalf("clique seal digest %s, go-ethereum's SealHash %s", sl.Digest, want)
			}
		}
		if sl, err := decodeHeaderSeal(raw, qbftCommitSeal); err != nil {
			wantBadRequest(t, "qbft header", err)
		} else {
			h, _ := decodeHeader(raw)
			x, err := consensus.DecodeQBFTExtra(h.Extra)
			if err != nil || sl.HRS != (fencing.HRS{Height: h.Number.Uint64(), Round: x.Round, Step: fencing.StepCommit}) || sl.HRS.Height == 0 {
				t.Fatalf("qbft seal HRS %v for header %d round %+v (%v)", sl.HRS, h.Number, x, err)
			}
		}
	})
}

// FuzzEth1Sign: the Web3Signer eth1 sign body and identifier.
func FuzzEth1Sign(f *testing.F) {
	key, err := crypto.HexToECDSA("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
	if err != nil {
		f.Fatal(err)
	}
	k := &Key{Address: crypto.PubkeyToAddress(key.PublicKey), priv: key}
	s := &Server{signer: &Signer{list: []*validatorGate{{id: fencing.ValidatorID(k.Address.Hex()), key: k}}}}
	f.Add(k.Address.Hex(), []byte(`{"data":"0x01"}`))
	f.Fuzz(func(t *testing.T, identifier string, body []byte) {
		var req Eth1SignRequest
		if err := decodeBody(body, &req); err != nil {
			wantBadRequest(t, "eth1 body", err)
			return
		}
		v, digest, err := s.eth1Request(identifier, req)
		if err != nil {
			wantBadRequest(t, "eth1 request", err)
			return
		}
		if string(v) != k.Address.Hex() || digest != fencing.Digest(crypto.Keccak256Hash(req.Data)) || len(req.Data) == 0 {
			t.Fatalf("eth1 request (%q, %x) = %s %s, want %s over keccak256(data)", identifier, req.Data, v, digest, k.Address)
		}
	})
}

// FuzzClefSignData: account_signData's content type, account and payload.
func FuzzClefSignData(f *testing.F) {
	f.Add(accounts.MimetypeTextPlain, "0x0000000000000000000000000000000000000001", []byte(`"0x01"`))
	f.Fuzz(func(t *testing.T, contentType, addr string, data []byte) {
		req, err := decodeSignData(contentType, addr, data)
		if err != nil {
			wantBadRequest(t, "account_signData", err)
			return
		}
		var raw hexData
		if err := json.Unmarshal(data, &raw); err != nil {
			t.Fatalf("accepted data %q that is not a hex string: %v", data, err)
		}
		switch {
		case req.seal != nil:
			// A Clique seal signs exactly keccak256 of what geth sent, at the
			// header's height.
			if req.legacyV || req.seal.Digest != fencing.Digest(crypto.Keccak256Hash(raw)) || req.seal.HRS.Step != fencing.StepBlock || req.seal.HRS.Height == 0 {
				t.Fatalf("clique request %+v for %x", req.seal, []byte(raw))
			}
		case !req.legacyV || req.digest != fencing.Digest(accounts.TextHash(raw)):
			t.Fatalf("text request %+v for %x", req, []byte(raw))
		}
	})
}

// FuzzClefSendTx: account_signTransaction's arguments. What is accepted is
// a replay-protected transaction whose signature recovers to the signer.
func FuzzClefSendTx(f *testing.F) {
	key, err := crypto.HexToECDSA("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(`{"from":"0x0000000000000000000000000000000000000001","gas":"0x5208","value":"0x0","nonce":"0x1","chainId":"0x1","gasPrice":"0x1"}`))
	f.Fuzz(func(t *testing.T, args []byte) {
		from, tx, signer, err := decodeSendTx(args)
		if err != nil {
			wantBadRequest(t, "account_signTransaction", err)
			return
		}
		if !common.IsHexAddress(string(from)) || signer.ChainID().Sign() <= 0 || (tx.Type() != types.LegacyTxType && tx.ChainId().Cmp(signer.ChainID()) != 0) {
			t.Fatalf("accepted a transaction from %q, type %d, chain %s, signer chain %s", from, tx.Type(), tx.ChainId(), signer.ChainID())
		}
		sig, err := crypto.Sign(signer.Hash(tx).Bytes(), key)
		if err != nil {
			t.Fatal(err)
		}
		signed, err := tx.WithSignature(signer, sig)
		if err != nil {
			t.Fatalf("WithSignature: %v", err)
		}
		if got, err := types.Sender(signer, signed); err != nil || got != crypto.PubkeyToAddress(key.PublicKey) || !signed.Protected() {
			t.Fatalf("Sender(signed) = %s, %v (protected %v)", got, err, signed.Protected())
		}
	})
}
