package sidecar

import (
	"encoding/json"
	"math/big"
	"net/http"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/consensus/clique"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/validator-fencing/fencing/internal/fencing"
)

func TestWeb3SignerPublicKeys(t *testing.T) {
	r := newSurfaceRig(t, rigOptions{validators: 2})
	res, err := http.Get(r.url + "/api/v1/eth1/publicKeys")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var keys []string
	if err := json.NewDecoder(res.Body).Decode(&keys); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET publicKeys = %d, %v", res.StatusCode, err)
	}
	if len(keys) != len(r.keys) {
		t.Fatalf("GET publicKeys = %v, want %d keys", keys, len(r.keys))
	}
	for i, k := range r.keys {
		// Web3Signer lists the 64-byte uncompressed key without its 0x04 prefix.
		want := hexutil.Encode(crypto.FromECDSAPub(&k.PublicKey)[1:])
		if keys[i] != want || len(keys[i]) != 2+128 {
			t.Fatalf("GET publicKeys [%d] = %s, want %s", i, keys[i], want)
		}
	}
}

func TestWeb3SignerSign(t *testing.T) {
	r := newSurfaceRig(t, rigOptions{})
	pub := hexutil.Encode(crypto.FromECDSAPub(&r.keys[0].PublicKey)[1:])
	addr := r.address(0)
	data := []byte("a transaction or any bytes; no HRS here")
	for _, tc := range []struct{ name, identifier string }{
		{"public key", pub},
		{"public key without 0x, upper case", strings.ToUpper(pub[2:])},
		{"checksummed address", addr.Hex()},
		{"lower-case address", strings.ToLower(addr.Hex())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := r.postJSON(t, "/api/v1/eth1/sign/"+tc.identifier, map[string]string{"data": hexutil.Encode(data)})
			if status != http.StatusOK {
				t.Fatalf("sign = %d %s, want 200", status, body)
			}
			// Web3Signer answers text/plain 0x<R‖S‖V> with V 27 or 28.
			sig, err := hexutil.Decode(string(body))
			if err != nil || len(sig) != 65 || (sig[64] != 27 && sig[64] != 28) {
				t.Fatalf("sign = %q, want 0x-hex of 65 bytes with V 27 or 28", body)
			}
			if got := recoverAddress(t, crypto.Keccak256(data), sig); got != addr {
				t.Fatalf("ecrecover(keccak256(data), sig) = %s, want %s", got, addr)
			}
		})
	}
}

// A Web3Signer request whose data is exactly a block seal's signing form
// (CliqueRLP, or a QBFT header with no seals) goes through the watermark: a
// second, different header at the same HRS is refused.
func TestWeb3SignerSealsGoThroughTheWatermark(t *testing.T) {
	r := newSurfaceRig(t, rigOptions{})
	addr := r.address(0)
	sign := func(data []byte) (int, []byte) {
		return r.postJSON(t, "/api/v1/eth1/sign/"+addr.Hex(), map[string]string{"data": hexutil.Encode(data)})
	}
	cliqueForm := func(n, time uint64) []byte {
		return clique.CliqueRLP(cliqueTestHeader(n, time, nil, big.NewInt(7)))
	}
	validators := []common.Address{addr, {0x02}, {0x03}}
	qbftForm := func(n, round, time uint64) []byte {
		return common.FromHex(headerRLP(t, qbftTestHeader(t, n, round, time, validators)))
	}
	n := r.height()
	for range 2 { // the same seal twice is idempotent
		if status, body := sign(cliqueForm(n, 1000)); status != http.StatusOK {
			t.Fatalf("clique seal = %d %s", status, body)
		}
	}
	status, body := sign(cliqueForm(n, 1001)) // same height, another timestamp
	wantCode(t, "a second Clique header at one height", status, body, http.StatusPreconditionFailed, fencing.CodeWatermark)
	m := r.height()
	if status, body := sign(qbftForm(m, 2, 1000)); status != http.StatusOK {
		t.Fatalf("qbft seal = %d %s", status, body)
	}
	status, body = sign(qbftForm(m, 2, 1001))
	wantCode(t, "a second QBFT header at one height and round", status, body, http.StatusPreconditionFailed, fencing.CodeWatermark)
}
