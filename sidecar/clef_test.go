package sidecar

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/accounts"
	"github.com/ethereum/go-ethereum/accounts/external"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/consensus/clique"
	"github.com/ethereum/go-ethereum/core/rawdb"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/params"
	"github.com/ethereum/go-ethereum/rpc"

	"github.com/validator-fencing/fencing/internal/fencing"
)

// These tests speak to the sidecar with go-ethereum's own Clef client
// (accounts/external, what geth --signer uses) and its rpc client.

var testChainID = big.NewInt(1337)

func externalSigner(t testing.TB, r *surfaceRig) (*external.ExternalSigner, accounts.Account) {
	t.Helper()
	es, err := external.NewExternalSigner(r.url) // pings account_version
	if err != nil {
		t.Fatalf("NewExternalSigner(%s) = %v", r.url, err)
	}
	return es, accounts.Account{Address: r.address(0)}
}

// clefCode is the code word of a JSON-RPC error: its message starts with it
// and its data carries it. nil is "".
func clefCode(t testing.TB, err error) fencing.Code {
	t.Helper()
	if err == nil {
		return ""
	}
	var de rpc.DataError
	if !errors.As(err, &de) {
		t.Fatalf("error %v is not a JSON-RPC error with data", err)
	}
	data, _ := de.ErrorData().(map[string]any)
	code := fencing.Code(fmt.Sprint(data["code"]))
	if !code.Known() || !strings.HasPrefix(err.Error(), string(code)+": ") {
		t.Fatalf("JSON-RPC error %q (data %v): want a message starting with the code word in data", err, de.ErrorData())
	}
	return code
}

func clefSurfaces() []surface {
	return []surface{
		{name: "clef clique seal", sign: func(t *testing.T, r *surfaceRig) fencing.Code {
			es, acc := externalSigner(t, r)
			_, err := es.SignData(acc, accounts.MimetypeClique, clique.CliqueRLP(cliqueTestHeader(r.height(), 1, nil, nil)))
			return clefCode(t, err)
		}},
		{name: "clef text", sign: func(t *testing.T, r *surfaceRig) fencing.Code {
			es, acc := externalSigner(t, r)
			_, err := es.SignText(acc, []byte("hello"))
			return clefCode(t, err)
		}},
		{name: "clef transaction", sign: func(t *testing.T, r *surfaceRig) fencing.Code {
			es, acc := externalSigner(t, r)
			tx := types.NewTransaction(r.height(), common.Address{0x42}, big.NewInt(1), 21000, big.NewInt(1e9), nil)
			_, err := es.SignTx(acc, tx, testChainID)
			return clefCode(t, err)
		}},
	}
}

func TestClefExternalSignerListsAndSigns(t *testing.T) {
	r := newSurfaceRig(t, rigOptions{})
	es, acc := externalSigner(t, r)
	if got := es.Accounts(); len(got) != 1 || got[0].Address != acc.Address || !es.Contains(acc) {
		t.Fatalf("Accounts() = %v, want [%s]", got, acc.Address)
	}

	t.Run("text", func(t *testing.T) {
		text := []byte("personal_sign me")
		sig, err := es.SignText(acc, text)
		if err != nil {
			t.Fatalf("SignText = %v", err)
		}
		if got := recoverAddress(t, accounts.TextHash(text), sig); got != acc.Address {
			t.Fatalf("ecrecover(TextHash, SignText) = %s, want %s", got, acc.Address)
		}
		// On the wire V is 27/28, as Clef writes it; the client converted it.
		var raw hexutil.Bytes
		if err := rpcClient(t, r).Call(&raw, "account_signData", accounts.MimetypeTextPlain, acc.Address, hexutil.Encode(text)); err != nil || len(raw) != 65 || raw[64] < 27 {
			t.Fatalf("account_signData(text/plain) = %x, %v, want V 27 or 28", raw, err)
		}
	})

	t.Run("clique", func(t *testing.T) {
		engine := clique.New(params.AllCliqueProtocolChanges.Clique, rawdb.NewMemoryDatabase())
		for _, tc := range []struct {
			name    string
			signers []common.Address
			baseFee *big.Int
		}{
			{name: "plain"},
			// With two signers the cut extraData is 72 bytes, which Clef itself
			// mistakes for a header that still has its seal.
			{name: "checkpoint", signers: []common.Address{acc.Address, {0x22}}},
			{name: "london", baseFee: big.NewInt(7)},
		} {
			t.Run(tc.name, func(t *testing.T) {
				h := cliqueTestHeader(r.height(), 1000, tc.signers, tc.baseFee)
				sig, err := es.SignData(acc, accounts.MimetypeClique, clique.CliqueRLP(h))
				if err != nil {
					t.Fatalf("SignData(clique) = %v", err)
				}
				if len(sig) != 65 || sig[64] > 1 {
					t.Fatalf("SignData(clique) = %x, want 65 bytes with V 0 or 1", sig)
				}
				if got := recoverAddress(t, clique.SealHash(h).Bytes(), sig); got != acc.Address {
					t.Fatalf("ecrecover(SealHash, seal) = %s, want %s", got, acc.Address)
				}
				// The sealed header passes go-ethereum's own EIP-225 recovery.
				copy(h.Extra[len(h.Extra)-65:], sig)
				if author, err := engine.Author(h); err != nil || author != acc.Address {
					t.Fatalf("clique Author(sealed) = %s, %v, want %s", author, err, acc.Address)
				}
			})
		}
	})

	t.Run("clique watermark", func(t *testing.T) {
		h := cliqueTestHeader(r.height(), 1000, nil, nil)
		first, err := es.SignData(acc, accounts.MimetypeClique, clique.CliqueRLP(h))
		if err != nil {
			t.Fatal(err)
		}
		again, err := es.SignData(acc, accounts.MimetypeClique, clique.CliqueRLP(h))
		if err != nil || !bytes.Equal(again, first) {
			t.Fatalf("re-sealing the same header = %x, %v, want %x", again, err, first)
		}
		other := types.CopyHeader(h)
		other.Time++
		_, err = es.SignData(acc, accounts.MimetypeClique, clique.CliqueRLP(other))
		if code := clefCode(t, err); code != fencing.CodeWatermark {
			t.Fatalf("sealing another header at height %d = %v, want watermark", h.Number, err)
		}
	})

	t.Run("transactions", func(t *testing.T) {
		to := common.Address{0x42}
		for _, tc := range []struct {
			name string
			tx   *types.Transaction
		}{
			{"legacy", types.NewTransaction(7, to, big.NewInt(1), 21000, big.NewInt(1e9), []byte{1, 2})},
			{"contract creation", types.NewContractCreation(8, big.NewInt(0), 100000, big.NewInt(1e9), []byte{0x60, 0x00})},
			{"access list", types.NewTx(&types.AccessListTx{ChainID: testChainID, Nonce: 9, To: &to, Gas: 30000, GasPrice: big.NewInt(1e9), AccessList: types.AccessList{{Address: to, StorageKeys: []common.Hash{{1}}}}})},
			{"dynamic fee", types.NewTx(&types.DynamicFeeTx{ChainID: testChainID, Nonce: 10, To: &to, Gas: 21000, GasFeeCap: big.NewInt(2e9), GasTipCap: big.NewInt(1e9), Value: big.NewInt(5)})},
		} {
			t.Run(tc.name, func(t *testing.T) {
				signed, err := es.SignTx(acc, tc.tx, testChainID)
				if err != nil {
					t.Fatalf("SignTx = %v", err)
				}
				from, err := types.Sender(types.LatestSignerForChainID(testChainID), signed)
				if err != nil || from != acc.Address {
					t.Fatalf("Sender(signed) = %s, %v, want %s", from, err, acc.Address)
				}
				if signed.Type() != tc.tx.Type() || signed.Nonce() != tc.tx.Nonce() || signed.To() == nil != (tc.tx.To() == nil) ||
					signed.Value().Cmp(tc.tx.Value()) != 0 || !bytes.Equal(signed.Data(), tc.tx.Data()) || signed.ChainId().Cmp(testChainID) != 0 {
					t.Fatalf("SignTx returned %+v, want the fields of %+v on chain %s", signed, tc.tx, testChainID)
				}
			})
		}
	})

	t.Run("typed data refused", func(t *testing.T) {
		_, err := es.SignData(acc, accounts.MimetypeTypedData, []byte(`{}`))
		if code := clefCode(t, err); code != fencing.CodeBadRequest {
			t.Fatalf("SignData(data/typed) = %v, want bad_request", err)
		}
	})
}

func rpcClient(t testing.TB, r *surfaceRig) *rpc.Client {
	t.Helper()
	c, err := rpc.DialHTTP(r.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestClefRejectsBadInput(t *testing.T) {
	r := newSurfaceRig(t, rigOptions{})
	c := rpcClient(t, r)
	addr := r.address(0).Hex()
	stranger := common.Address{0x99}.Hex()
	clq := hexutil.Encode(clique.CliqueRLP(cliqueTestHeader(r.height(), 1, nil, nil)))
	shanghai := cliqueTestHeader(r.height(), 1, nil, nil)
	shanghai.BaseFee, shanghai.WithdrawalsHash = big.NewInt(1), &types.EmptyWithdrawalsHash
	tx := func(fields string) json.RawMessage {
		return json.RawMessage(`{"from":"` + addr + `","to":"0x0000000000000000000000000000000000000042","gas":"0x5208","value":"0x0","nonce":"0x1"` + fields + `}`)
	}
	for _, tc := range []struct {
		name   string
		method string
		args   []any
	}{
		{"non-hex data", "account_signData", []any{accounts.MimetypeTextPlain, addr, "0xzz"}},
		{"data not a string", "account_signData", []any{accounts.MimetypeTextPlain, addr, 12}},
		{"unparsable content type", "account_signData", []any{";;", addr, "0x01"}},
		{"unknown content type", "account_signData", []any{"application/json", addr, "0x01"}},
		{"typed data", "account_signData", []any{accounts.MimetypeTypedData, addr, "0x7b7d"}},
		{"validator data", "account_signData", []any{accounts.MimetypeDataWithValidator, addr, "0x01"}},
		{"not an address", "account_signData", []any{accounts.MimetypeTextPlain, "bob", "0x01"}},
		{"unknown account", "account_signData", []any{accounts.MimetypeTextPlain, stranger, "0x01"}},
		{"unknown account clique", "account_signData", []any{accounts.MimetypeClique, stranger, clq}},
		{"clique RLP garbage", "account_signData", []any{accounts.MimetypeClique, addr, "0xdeadbeef"}},
		{"clique empty", "account_signData", []any{accounts.MimetypeClique, addr, "0x"}},
		{"clique trailing bytes", "account_signData", []any{accounts.MimetypeClique, addr, clq + "00"}},
		{"clique post-shanghai header", "account_signData", []any{accounts.MimetypeClique, addr, headerRLP(t, shanghai)}},
		{"clique genesis", "account_signData", []any{accounts.MimetypeClique, addr, hexutil.Encode(clique.CliqueRLP(cliqueTestHeader(0, 1, nil, nil)))}},
		{"tx without chainId", "account_signTransaction", []any{tx(`,"gasPrice":"0x1"`)}},
		{"tx with chainId 0", "account_signTransaction", []any{tx(`,"gasPrice":"0x1","chainId":"0x0"`)}},
		{"tx without fees", "account_signTransaction", []any{tx(`,"chainId":"0x539"`)}},
		{"tx with both fee kinds", "account_signTransaction", []any{tx(`,"chainId":"0x539","gasPrice":"0x1","maxFeePerGas":"0x2","maxPriorityFeePerGas":"0x1"`)}},
		{"tx blob", "account_signTransaction", []any{tx(`,"chainId":"0x539","maxFeePerGas":"0x2","maxPriorityFeePerGas":"0x1","maxFeePerBlobGas":"0x1","blobVersionedHashes":["0x0100000000000000000000000000000000000000000000000000000000000000"]`)}},
		{"tx data and input differ", "account_signTransaction", []any{tx(`,"chainId":"0x539","gasPrice":"0x1","data":"0x01","input":"0x02"`)}},
		{"tx unknown field", "account_signTransaction", []any{tx(`,"chainId":"0x539","gasPrice":"0x1","authorizationList":[]`)}},
		{"tx from a stranger", "account_signTransaction", []any{json.RawMessage(`{"from":"` + stranger + `","gas":"0x5208","value":"0x0","nonce":"0x1","chainId":"0x539","gasPrice":"0x1"}`)}},
		{"tx without from", "account_signTransaction", []any{json.RawMessage(`{"gas":"0x5208","value":"0x0","nonce":"0x1","chainId":"0x539","gasPrice":"0x1"}`)}},
		{"tx not an object", "account_signTransaction", []any{"0x01"}},
		{"tx bad quantity", "account_signTransaction", []any{tx(`,"chainId":"0x539","gasPrice":"1"`)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var res json.RawMessage
			err := c.Call(&res, tc.method, tc.args...)
			var re rpc.Error
			if code := clefCode(t, err); code != fencing.CodeBadRequest || !errors.As(err, &re) || re.ErrorCode() != rpcInvalidParams {
				t.Fatalf("%s(%v) = %s, %v; want a bad_request JSON-RPC error %d", tc.method, tc.args, res, err, rpcInvalidParams)
			}
		})
	}

	// Below the rpc client: a broken body and an oversized one still get
	// JSON-RPC error objects.
	for _, tc := range []struct {
		name       string
		body       []byte
		wantStatus int
		wantCode   int
	}{
		{"malformed JSON", []byte(`{"jsonrpc":"2.0","id":1,"method":`), http.StatusOK, -32700},
		{"unknown method", []byte(`{"jsonrpc":"2.0","id":1,"method":"account_new","params":[]}`), http.StatusOK, -32601},
		{"oversized", append([]byte(`{"jsonrpc":"2.0","id":1,"method":"account_signData","params":["text/plain","`+addr+`","0x`), bytes.Repeat([]byte("00"), clefMaxBody)...), http.StatusRequestEntityTooLarge, rpcInvalidReq},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := r.post(t, "/", "application/json", tc.body)
			var msg struct {
				Error *struct {
					Code    int    `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal(body, &msg); err != nil || status != tc.wantStatus || msg.Error == nil || msg.Error.Code != tc.wantCode {
				t.Fatalf("POST / %s = %d %.200s, want %d with JSON-RPC error %d", tc.name, status, body, tc.wantStatus, tc.wantCode)
			}
		})
	}
}
