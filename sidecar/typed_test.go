package sidecar

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/consensus/clique"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/rlp"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/consensus"
	"github.com/validator-fencing/fencing/internal/fencetest"
	"github.com/validator-fencing/fencing/internal/fencing"
	"github.com/validator-fencing/fencing/internal/flagenv"
)

// The external signing surfaces' tests (typed_test.go, web3signer_test.go,
// clef_test.go, bench_test.go) share surfaceRig: SigningHandler on a real
// 127.0.0.1 listener, real keys in 0600 files, leases from a real
// coordinator (internal/fencetest) on real embedded etcd.

type surfaceRig struct {
	coord  *fencetest.Coordinator
	signer *Signer
	url    string
	keys   []*ecdsa.PrivateKey
	ids    []string // validator IDs: the keys' EIP-55 addresses, in key order
	next   atomic.Uint64
}

type rigOptions struct {
	mode       Mode                   // default strict
	validators int                    // default 1
	ttl        time.Duration          // lease TTL; default 3s, so that a bump of a lease that is not released waits little
	coord      fencetest.Options      // the coordinator started for the rig
	existing   *fencetest.Coordinator // or one already running
}

const rigHolder = "region-a"

func newSurfaceRig(t testing.TB, o rigOptions) *surfaceRig {
	t.Helper()
	if o.mode == "" {
		o.mode = ModeStrict
	}
	if o.validators == 0 {
		o.validators = 1
	}
	if o.ttl == 0 {
		o.ttl = 3 * time.Second
	}
	r := &surfaceRig{coord: o.existing}
	if r.coord == nil {
		r.coord = fencetest.Start(t, o.coord)
	}
	dir := t.TempDir()
	cfg := Config{
		Coordinator: flagenv.List{r.coord.URL}, Holder: rigHolder, Name: "sidecar-a", Listen: "127.0.0.1:0",
		StateDir: filepath.Join(dir, "state"), Mode: string(o.mode), LeaseTTL: o.ttl,
		SafetyMargin: time.Second, LogLevel: "info",
	}
	for i := range o.validators {
		key, err := crypto.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, fmt.Sprintf("key-%d.hex", i))
		if err := os.WriteFile(path, []byte(hex.EncodeToString(crypto.FromECDSA(key))+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		id := crypto.PubkeyToAddress(key.PublicKey).Hex()
		r.coord.AddValidator(t, id, rigHolder)
		r.keys, r.ids, cfg.Keys = append(r.keys, key), append(r.ids, id), append(cfg.Keys, path)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	coord, err := api.NewClient(cfg.Coordinator, api.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	if r.signer, err = NewSigner(cfg, coord, reg, hclog.NewNullLogger()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var keepers sync.WaitGroup
	keepers.Go(func() { r.signer.Run(ctx) })
	hs := httptest.NewServer((&Server{signer: r.signer, lg: hclog.NewNullLogger(), gatherer: reg}).SigningHandler())
	r.url = hs.URL
	t.Cleanup(func() {
		hs.Close()
		cancel()
		keepers.Wait()
		for _, g := range r.signer.list {
			_ = g.journal.Close()
		}
	})
	waitHeld(t, r.signer)
	return r
}

// height returns a new block height, above every one handed out before, so
// that each signature of a test is above the validator's watermark.
func (r *surfaceRig) height() uint64 { return r.next.Add(1) + 100 }

func (r *surfaceRig) address(i int) common.Address {
	return crypto.PubkeyToAddress(r.keys[i].PublicKey)
}

// post sends body to path and returns the status and the response body.
func (r *surfaceRig) post(t testing.TB, path, contentType string, body []byte) (int, []byte) {
	t.Helper()
	res, err := http.Post(r.url+path, contentType, bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("POST %s: read: %v", path, err)
	}
	return res.StatusCode, b
}

func (r *surfaceRig) postJSON(t testing.TB, path string, v any) (int, []byte) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return r.post(t, path, "application/json", b)
}

// wantCode checks an error answer: its status and code word.
func wantCode(t testing.TB, what string, status int, body []byte, wantStatus int, codes ...fencing.Code) {
	t.Helper()
	var e api.ErrorResponse
	if err := json.Unmarshal(body, &e); err != nil || status != wantStatus || e.Message == "" {
		t.Fatalf("%s = %d %s, want %d with a code word and a message", what, status, body, wantStatus)
	}
	for _, c := range codes {
		if e.Code == c {
			return
		}
	}
	t.Fatalf("%s = code %q (%s), want one of %v", what, e.Code, e.Message, codes)
}

// recoverAddress is ecrecover of sig (V 0/1 or 27/28) over digest.
func recoverAddress(t testing.TB, digest []byte, sig []byte) common.Address {
	t.Helper()
	if len(sig) != crypto.SignatureLength {
		t.Fatalf("signature has %d bytes, want 65", len(sig))
	}
	s := bytes.Clone(sig)
	if s[64] >= 27 {
		s[64] -= 27
	}
	pub, err := crypto.SigToPub(digest, s)
	if err != nil {
		t.Fatalf("SigToPub: %v", err)
	}
	return crypto.PubkeyToAddress(*pub)
}

// cliqueTestHeader is a Clique header at number with room for the seal;
// signers makes it a checkpoint, baseFee a post-London one.
func cliqueTestHeader(number, time uint64, signers []common.Address, baseFee *big.Int) *types.Header {
	extra := bytes.Repeat([]byte{0x11}, 32)
	for _, s := range signers {
		extra = append(extra, s[:]...)
	}
	return &types.Header{
		ParentHash: common.BytesToHash(crypto.Keccak256(big.NewInt(int64(number)).Bytes())), UncleHash: types.EmptyUncleHash,
		Root: types.EmptyRootHash, TxHash: types.EmptyTxsHash, ReceiptHash: types.EmptyReceiptsHash,
		Difficulty: big.NewInt(2), Number: new(big.Int).SetUint64(number), GasLimit: 30_000_000, Time: time,
		Extra: append(extra, make([]byte, crypto.SignatureLength)...), BaseFee: baseFee,
	}
}

// qbftExtra is Besu's QBFT extraData RLP[vanity, validators, vote, round, seals].
func qbftExtra(t testing.TB, validators []common.Address, round uint64, seals [][]byte) []byte {
	t.Helper()
	if seals == nil {
		seals = [][]byte{}
	}
	b, err := rlp.EncodeToBytes([]any{make([]byte, 32), validators, []any{}, round, seals})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func qbftTestHeader(t testing.TB, number, round, time uint64, validators []common.Address) *types.Header {
	return &types.Header{
		ParentHash: common.BytesToHash(crypto.Keccak256(big.NewInt(int64(number)).Bytes())), UncleHash: types.EmptyUncleHash,
		Coinbase: validators[0], Root: types.EmptyRootHash, TxHash: types.EmptyTxsHash, ReceiptHash: types.EmptyReceiptsHash,
		Difficulty: big.NewInt(1), Number: new(big.Int).SetUint64(number), GasLimit: 30_000_000, Time: time,
		Extra: qbftExtra(t, validators, round, nil), MixDigest: consensus.IstanbulDigest, BaseFee: big.NewInt(0),
	}
}

func headerRLP(t testing.TB, h *types.Header) string {
	t.Helper()
	b, err := rlp.EncodeToBytes(h)
	if err != nil {
		t.Fatal(err)
	}
	return hexutil.Encode(b)
}

// signSeal asks a typed helper for a seal and checks the answer's shape.
func (r *surfaceRig) signSeal(t testing.TB, path string, h *types.Header) (SealResponse, []byte) {
	t.Helper()
	status, body := r.postJSON(t, path, HeaderSignRequest{Validator: fencing.ValidatorID(r.ids[0]), Header: hexData(common.FromHex(headerRLP(t, h)))})
	if status != http.StatusOK {
		t.Fatalf("POST %s = %d %s, want 200", path, status, body)
	}
	var res SealResponse
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatalf("POST %s: %v in %s", path, err, body)
	}
	sig := common.FromHex(res.Signature)
	if len(sig) != 65 || sig[64] > 1 || res.Epoch == 0 {
		t.Fatalf("POST %s = %s: want a 65-byte signature with V 0 or 1 and an epoch", path, body)
	}
	return res, sig
}

func TestTypedCliqueSeal(t *testing.T) {
	r := newSurfaceRig(t, rigOptions{})
	for _, tc := range []struct {
		name    string
		signers []common.Address
		baseFee *big.Int
	}{
		{name: "plain"},
		{name: "checkpoint", signers: []common.Address{r.address(0), {0x22}}},
		{name: "london", baseFee: big.NewInt(7)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := cliqueTestHeader(r.height(), 1000, tc.signers, tc.baseFee)
			res, sig := r.signSeal(t, "/v1/sign/clique", h)
			want := clique.SealHash(h) // go-ethereum's own EIP-225 seal hash
			if res.HRS != (fencing.HRS{Height: h.Number.Uint64(), Step: fencing.StepBlock}) || res.Digest != fencing.Digest(want) {
				t.Fatalf("clique seal = %v %s, want %d/0/block %s", res.HRS, res.Digest, h.Number, want)
			}
			// Seal the header and verify it as the chain audit does: the block
			// hash covers the seal, and the recovered proposer is our key.
			copy(h.Extra[len(h.Extra)-65:], sig)
			sh, err := consensus.VerifyHeader(h, h.Hash(), consensus.ConsensusClique)
			if err != nil || sh.Proposer != r.address(0) {
				t.Fatalf("VerifyHeader(sealed) = %+v, %v, want proposer %s", sh, err, r.address(0))
			}
		})
	}
}

func TestTypedQBFTCommitSeal(t *testing.T) {
	r := newSurfaceRig(t, rigOptions{})
	validators := []common.Address{r.address(0), {0x02}, {0x03}, {0x04}}
	n := r.height()
	h := qbftTestHeader(t, n, 2, 1000, validators)
	res, sig := r.signSeal(t, "/v1/sign/qbft-commit", h)
	// The header as built has an empty seal list and keeps the round: its
	// hash is the committed-seal hash, independently of audit's encoder.
	if res.HRS != (fencing.HRS{Height: n, Round: 2, Step: fencing.StepCommit}) || res.Digest != fencing.Digest(h.Hash()) {
		t.Fatalf("qbft commit seal = %v %s, want %d/2/commit %s", res.HRS, res.Digest, n, h.Hash())
	}
	// Put the seal into extraData and recover it with the chain consensus.
	sealed := types.CopyHeader(h)
	sealed.Extra = qbftExtra(t, validators, 2, [][]byte{sig})
	reported, err := consensus.BlockHash(sealed, consensus.ConsensusQBFT)
	if err != nil {
		t.Fatal(err)
	}
	sh, err := consensus.VerifyHeader(sealed, reported, consensus.ConsensusQBFT)
	if err != nil || len(sh.Seals) != 1 || sh.Seals[0].Signer != r.address(0) || sh.Round != 2 {
		t.Fatalf("VerifyHeader(sealed) = %+v, %v, want one seal by %s at round 2", sh, err, r.address(0))
	}

	// The same header again is the same signature; a different header at
	// the same HRS (a changed timestamp) is refused by the watermark.
	if again, sig2 := r.signSeal(t, "/v1/sign/qbft-commit", h); !bytes.Equal(sig, sig2) || again.HRS != res.HRS {
		t.Fatalf("re-signing the same header = %x, want %x", sig2, sig)
	}
	status, body := r.postJSON(t, "/v1/sign/qbft-commit", HeaderSignRequest{Validator: fencing.ValidatorID(r.ids[0]), Header: common.FromHex(headerRLP(t, qbftTestHeader(t, n, 2, 1001, validators)))})
	wantCode(t, "a second header at the same HRS", status, body, http.StatusPreconditionFailed, fencing.CodeWatermark)
	// A lower round of the same height is below the watermark.
	status, body = r.postJSON(t, "/v1/sign/qbft-commit", HeaderSignRequest{Validator: fencing.ValidatorID(r.ids[0]), Header: common.FromHex(headerRLP(t, qbftTestHeader(t, n, 1, 1000, validators)))})
	wantCode(t, "a lower round", status, body, http.StatusPreconditionFailed, fencing.CodeWatermark)
}

// surface is one way of asking the sidecar for a signature; the refusal and
// bad-input tables run every surface.
type surface struct {
	name string
	// sign asks for a fresh signature and returns the refusal's code word,
	// or "" when it signed.
	sign func(t *testing.T, r *surfaceRig) fencing.Code
}

// jsonSurface posts the request built by req and returns the code word of
// a non-200 answer, which must be {"code","message"} with the code's status.
func jsonSurface(name string, req func(t testing.TB, r *surfaceRig) (path string, body any)) surface {
	return surface{name: name, sign: func(t *testing.T, r *surfaceRig) fencing.Code {
		path, v := req(t, r)
		status, body := r.postJSON(t, path, v)
		if status == http.StatusOK {
			return ""
		}
		var e api.ErrorResponse
		if err := json.Unmarshal(body, &e); err != nil || status != api.StatusOf(e.Code) || e.Message == "" {
			t.Fatalf("POST %s = %d %s: want {code, message} with the code's status", path, status, body)
		}
		return e.Code
	}}
}

func surfaces() []surface {
	return append([]surface{
		jsonSurface("native", func(t testing.TB, r *surfaceRig) (string, any) {
			return "/v1/sign", SignRequest{Validator: fencing.ValidatorID(r.ids[0]), Height: r.height(), Step: fencing.StepPrepare, Digest: fencing.Digest{1}}
		}),
		jsonSurface("typed clique", func(t testing.TB, r *surfaceRig) (string, any) {
			return "/v1/sign/clique", HeaderSignRequest{Validator: fencing.ValidatorID(r.ids[0]), Header: common.FromHex(headerRLP(t, cliqueTestHeader(r.height(), 1, nil, nil)))}
		}),
		jsonSurface("typed qbft", func(t testing.TB, r *surfaceRig) (string, any) {
			h := qbftTestHeader(t, r.height(), 0, 1, []common.Address{r.address(0)})
			return "/v1/sign/qbft-commit", HeaderSignRequest{Validator: fencing.ValidatorID(r.ids[0]), Header: common.FromHex(headerRLP(t, h))}
		}),
		jsonSurface("web3signer eth1", func(t testing.TB, r *surfaceRig) (string, any) {
			return "/api/v1/eth1/sign/" + hexutil.Encode(r.signer.Validators()[0].Key.PublicKey()), Eth1SignRequest{Data: []byte("payload")}
		}),
	}, clefSurfaces()...)
}

func TestSurfacesRefuseWhenFenced(t *testing.T) {
	for _, mode := range []Mode{ModeStrict, ModeLease} {
		t.Run(string(mode), func(t *testing.T) {
			r := newSurfaceRig(t, rigOptions{mode: mode})
			all := surfaces()
			for _, s := range all {
				if code := s.sign(t, r); code != "" {
					t.Fatalf("%s while holding the lease refused with %q, want a signature", s.name, code)
				}
			}
			r.coord.Bump(t, r.ids[0], "region-b")
			for _, s := range all {
				t.Run(s.name, func(t *testing.T) {
					if code := s.sign(t, r); code != fencing.CodeFenced && code != fencing.CodeStaleEpoch {
						t.Fatalf("%s after the bump to region-b = %q, want fenced or stale_epoch", s.name, code)
					}
				})
			}
		})
	}
}

func TestSurfacesRejectBadInput(t *testing.T) {
	r := newSurfaceRig(t, rigOptions{})
	id := r.ids[0]
	pub := hexutil.Encode(r.signer.Validators()[0].Key.PublicKey())
	clq := headerRLP(t, cliqueTestHeader(r.height(), 1, nil, nil))
	qbft := headerRLP(t, qbftTestHeader(t, r.height(), 0, 1, []common.Address{r.address(0)}))
	genesis := headerRLP(t, cliqueTestHeader(0, 1, nil, nil))
	digest := fencing.Digest{1}.String()
	oversized := `{"validator":"` + strings.Repeat("a", api.MaxBodyBytes) + `"}`
	for _, tc := range []struct {
		name, path, body string
	}{
		{"native malformed JSON", "/v1/sign", `{"validator":`},
		{"native trailing data", "/v1/sign", `{"validator":"` + id + `"} {}`},
		{"native unknown field", "/v1/sign", `{"validator":"` + id + `","height":1,"step":"block","digest":"` + digest + `","extra":1}`},
		{"native short digest", "/v1/sign", `{"validator":"` + id + `","height":1,"step":"block","digest":"0x1234"}`},
		{"native long digest", "/v1/sign", `{"validator":"` + id + `","height":1,"step":"block","digest":"` + digest + `00"}`},
		{"native non-hex digest", "/v1/sign", `{"validator":"` + id + `","height":1,"step":"block","digest":"0x` + strings.Repeat("zz", 32) + `"}`},
		{"native unknown validator", "/v1/sign", `{"validator":"0x0000000000000000000000000000000000000001","height":1,"step":"block","digest":"` + digest + `"}`},
		{"native unknown step", "/v1/sign", `{"validator":"` + id + `","height":1,"step":"vote","digest":"` + digest + `"}`},
		{"native height not a number", "/v1/sign", `{"validator":"` + id + `","height":"1","step":"block","digest":"` + digest + `"}`},
		{"native oversized", "/v1/sign", oversized},
		{"clique malformed JSON", "/v1/sign/clique", `{"header":`},
		{"clique RLP garbage", "/v1/sign/clique", `{"validator":"` + id + `","header":"0xdeadbeef"}`},
		{"clique RLP with trailing bytes", "/v1/sign/clique", `{"validator":"` + id + `","header":"` + clq + `00"}`},
		{"clique non-hex header", "/v1/sign/clique", `{"validator":"` + id + `","header":"0xzz"}`},
		{"clique header not a string", "/v1/sign/clique", `{"validator":"` + id + `","header":12}`},
		{"clique empty header", "/v1/sign/clique", `{"validator":"` + id + `","header":"0x"}`},
		{"clique genesis", "/v1/sign/clique", `{"validator":"` + id + `","header":"` + genesis + `"}`},
		{"clique given a QBFT header", "/v1/sign/clique", `{"validator":"` + id + `","header":"` + qbft + `"}`},
		{"clique unknown validator", "/v1/sign/clique", `{"validator":"someone-else","header":"` + clq + `"}`},
		{"clique oversized", "/v1/sign/clique", oversized},
		{"qbft RLP garbage", "/v1/sign/qbft-commit", `{"validator":"` + id + `","header":"0xc3010203"}`},
		{"qbft given a Clique header", "/v1/sign/qbft-commit", `{"validator":"` + id + `","header":"` + clq + `"}`},
		{"qbft unknown validator", "/v1/sign/qbft-commit", `{"validator":"0x0000000000000000000000000000000000000001","header":"` + qbft + `"}`},
		{"eth1 malformed JSON", "/api/v1/eth1/sign/" + pub, `{"data":"0x`},
		{"eth1 non-hex data", "/api/v1/eth1/sign/" + pub, `{"data":"0xnothex"}`},
		{"eth1 odd-length data", "/api/v1/eth1/sign/" + pub, `{"data":"0x123"}`},
		{"eth1 no data", "/api/v1/eth1/sign/" + pub, `{}`},
		{"eth1 unknown field", "/api/v1/eth1/sign/" + pub, `{"data":"0x01","type":"x"}`},
		{"eth1 unknown identifier", "/api/v1/eth1/sign/0x" + strings.Repeat("ab", 64), `{"data":"0x01"}`},
		{"eth1 oversized", "/api/v1/eth1/sign/" + pub, `{"data":"0x` + strings.Repeat("00", api.MaxBodyBytes) + `"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := r.post(t, tc.path, "application/json", []byte(tc.body))
			wantCode(t, "POST "+tc.path, status, body, http.StatusBadRequest, fencing.CodeBadRequest)
		})
	}
	// The catch-all still answers everything that is no endpoint, including
	// other methods and paths beside Clef's POST /.
	for _, tc := range []struct{ method, path string }{{"GET", "/"}, {"PUT", "/"}, {"POST", "/nope"}, {"GET", "/api/v1/eth1/sign/" + pub}} {
		req, _ := http.NewRequest(tc.method, r.url+tc.path, nil)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		wantCode(t, tc.method+" "+tc.path, res.StatusCode, body, http.StatusNotFound, fencing.CodeNotFound)
	}
}

// A web page in a browser on the validator's host cannot make the sidecar
// sign: not through DNS rebinding (a foreign Host), not with a cross-site
// request (an Origin, or a body not declared as JSON); nothing is signed.
func TestSigningAPIRefusesBrowsers(t *testing.T) {
	r := newSurfaceRig(t, rigOptions{})
	body := `{"validator":"` + r.ids[0] + `","height":` + fmt.Sprint(r.height()) + `,"round":0,"step":"commit","digest":"0x` + strings.Repeat("11", 32) + `"}`
	for _, tc := range []struct {
		name   string
		set    func(*http.Request)
		status int
		code   fencing.Code
	}{
		{"rebinding host", func(q *http.Request) { q.Host = "evil.example:7700" }, http.StatusForbidden, fencing.CodeForbidden},
		{"cross-site origin", func(q *http.Request) { q.Header.Set("Origin", "https://evil.example") }, http.StatusForbidden, fencing.CodeForbidden},
		{"text/plain body", func(q *http.Request) { q.Header.Set("Content-Type", "text/plain") }, http.StatusBadRequest, fencing.CodeBadRequest},
		{"form body", func(q *http.Request) { q.Header.Set("Content-Type", "application/x-www-form-urlencoded") }, http.StatusBadRequest, fencing.CodeBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, _ := http.NewRequest("POST", r.url+"/v1/sign", strings.NewReader(body))
			q.Header.Set("Content-Type", "application/json")
			tc.set(q)
			res, err := http.DefaultClient.Do(q)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			wantCode(t, tc.name, res.StatusCode, b, tc.status, tc.code)
		})
	}
	// The same request as a validator client sends it is signed.
	if status, b := r.post(t, "/v1/sign", "application/json", []byte(body)); status != http.StatusOK {
		t.Fatalf("POST /v1/sign from a client = %d %s", status, b)
	}
}

// realBlock is a real header from internal/audit/testdata/real (its README
// names the sources) with what the source states about its seal.
type realBlock struct {
	rlp    []byte
	expect struct {
		SealHash          *common.Hash `json:"seal_hash"`
		CommittedSealHash *common.Hash `json:"committed_seal_hash"`
		Round             uint64       `json:"round"`
	}
}

func loadRealBlock(t testing.TB, file string) realBlock {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "internal", "audit", "testdata", "real", file))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Header    map[string]any  `json:"header"`
		HeaderRLP string          `json:"header_rlp"`
		Expect    json.RawMessage `json:"expect"`
	}
	var rb realBlock
	if err := json.Unmarshal(b, &f); err != nil || json.Unmarshal(f.Expect, &rb.expect) != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if rb.rlp = common.FromHex(f.HeaderRLP); f.HeaderRLP == "" {
		if f.Header["hash"] == nil {
			f.Header["hash"] = common.Hash{}.Hex() // not stated by the source; unused here
		}
		j, _ := json.Marshal(f.Header)
		h, _, err := consensus.DecodeHeaderJSON(j)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		rb.rlp = common.FromHex(headerRLP(t, h))
	}
	return rb
}

// TestHeaderSealsOfRealBlocks derives the seals of real blocks and compares
// them with what their sources state: a Rinkeby Clique seal hash (Nethermind's
// tests) and a Besu QBFT committed-seal hash (besu-qbft-elc's tests).
func TestHeaderSealsOfRealBlocks(t *testing.T) {
	for _, tc := range []struct {
		file   string
		derive func(*types.Header) (seal, error)
		step   fencing.Step
	}{
		{"clique_rinkeby_269.json", cliqueSeal, fencing.StepBlock},
		{"qbft_besu_elc_block7528.json", qbftCommitSeal, fencing.StepCommit},
	} {
		t.Run(tc.file, func(t *testing.T) {
			rb := loadRealBlock(t, tc.file)
			want := rb.expect.SealHash
			if want == nil {
				want = rb.expect.CommittedSealHash
			}
			sl, err := decodeHeaderSeal(rb.rlp, tc.derive)
			if err != nil || want == nil || sl.Digest != fencing.Digest(*want) || sl.HRS.Step != tc.step || sl.HRS.Round != rb.expect.Round {
				t.Fatalf("seal = %v %s, %v; want %s at round %d step %s", sl.HRS, sl.Digest, err, want, rb.expect.Round, tc.step)
			}
		})
	}
}

// ibft2Extra is Besu's IBFT 2.0 extraData
// RLP[vanity, validators, vote, round (4 bytes), seals]; without seals nil
// and sealList false it is the committed-seal signing form, four items.
func ibft2Extra(t testing.TB, validators []common.Address, round uint32, seals [][]byte, sealList bool) []byte {
	t.Helper()
	items := []any{make([]byte, 32), validators, []byte{}, binary.BigEndian.AppendUint32(nil, round)}
	if sealList {
		if seals == nil {
			seals = [][]byte{}
		}
		items = append(items, seals)
	}
	b, err := rlp.EncodeToBytes(items)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ibft2TestHeader(t testing.TB, number uint64, round uint32, time uint64, validators []common.Address, sealList bool) *types.Header {
	h := qbftTestHeader(t, number, 0, time, validators)
	h.Extra = ibft2Extra(t, validators, round, nil, sealList)
	return h
}

// Finding 4: IBFT 2.0 committed seals are recognised on the typed and the
// Web3Signer surfaces and go through the watermark; before, an IBFT 2.0
// signing form sent to Web3Signer eth1 was signed as a bare digest, so a
// second block at the same height and round was sealed.
func TestIBFT2CommitSeal(t *testing.T) {
	r := newSurfaceRig(t, rigOptions{})
	validators := []common.Address{r.address(0), {0x02}, {0x03}, {0x04}}

	t.Run("typed", func(t *testing.T) {
		n := r.height()
		h := ibft2TestHeader(t, n, 3, 1000, validators, true)
		res, sig := r.signSeal(t, "/v1/sign/ibft2-commit", h)
		signingForm := ibft2TestHeader(t, n, 3, 1000, validators, false)
		if res.HRS != (fencing.HRS{Height: n, Round: 3, Step: fencing.StepCommit}) || res.Digest != fencing.Digest(signingForm.Hash()) {
			t.Fatalf("ibft2 commit seal = %v %s, want %d/3/commit %s", res.HRS, res.Digest, n, signingForm.Hash())
		}
		sealed := types.CopyHeader(h)
		sealed.Extra = ibft2Extra(t, validators, 3, [][]byte{sig}, true)
		reported, err := consensus.BlockHash(sealed, consensus.ConsensusIBFT2)
		if err != nil {
			t.Fatal(err)
		}
		sh, err := consensus.VerifyHeader(sealed, reported, consensus.ConsensusIBFT2)
		if err != nil || len(sh.Seals) != 1 || sh.Seals[0].Signer != r.address(0) || sh.Round != 3 {
			t.Fatalf("VerifyHeader(sealed) = %+v, %v, want one seal by %s at round 3", sh, err, r.address(0))
		}
		status, body := r.postJSON(t, "/v1/sign/ibft2-commit", HeaderSignRequest{Validator: fencing.ValidatorID(r.ids[0]), Header: common.FromHex(headerRLP(t, ibft2TestHeader(t, n, 3, 1001, validators, true)))})
		wantCode(t, "a second IBFT 2.0 header at the same HRS", status, body, http.StatusPreconditionFailed, fencing.CodeWatermark)
		status, body = r.postJSON(t, "/v1/sign/qbft-commit", HeaderSignRequest{Validator: fencing.ValidatorID(r.ids[0]), Header: common.FromHex(headerRLP(t, ibft2TestHeader(t, r.height(), 3, 1000, validators, true)))})
		wantCode(t, "an IBFT 2.0 header on the QBFT endpoint", status, body, http.StatusBadRequest, fencing.CodeBadRequest)
	})

	t.Run("web3signer", func(t *testing.T) {
		sign := func(data []byte) (int, []byte) {
			return r.postJSON(t, "/api/v1/eth1/sign/"+r.address(0).Hex(), map[string]string{"data": hexutil.Encode(data)})
		}
		n := r.height()
		form := func(time uint64) []byte {
			return common.FromHex(headerRLP(t, ibft2TestHeader(t, n, 2, time, validators, false)))
		}
		if status, body := sign(form(1000)); status != http.StatusOK {
			t.Fatalf("ibft2 seal = %d %s", status, body)
		}
		status, body := sign(form(1001))
		wantCode(t, "a second IBFT 2.0 header at one height and round", status, body, http.StatusPreconditionFailed, fencing.CodeWatermark)
		// Header-shaped data that is no seal's signing form is not signed
		// as a bare digest: a sealed header, a header with seals.
		for name, h := range map[string]*types.Header{
			"ibft2 header with its seal list": ibft2TestHeader(t, r.height(), 0, 1000, validators, true),
			"qbft header with a seal": func() *types.Header {
				h := qbftTestHeader(t, r.height(), 0, 1000, validators)
				h.Extra = qbftExtra(t, validators, 0, [][]byte{make([]byte, 65)})
				return h
			}(),
			"clique header with its seal": cliqueTestHeader(r.height(), 1000, nil, nil),
		} {
			status, body := sign(common.FromHex(headerRLP(t, h)))
			wantCode(t, name, status, body, http.StatusBadRequest, fencing.CodeBadRequest)
		}
	})
}

// The digest derived for a real IBFT 2.0 block (Besu, Quorum Dev Quickstart)
// is what its committers signed: every seal recovers to a validator.
func TestIBFT2SealOfARealBlock(t *testing.T) {
	rb := loadRealBlock(t, "ibft2_quickstart_block1.json")
	h, err := consensus.DecodeHeaderRLP(rb.rlp)
	if err != nil {
		t.Fatal(err)
	}
	sl, err := ibft2CommitSeal(h)
	if err != nil || sl.HRS != (fencing.HRS{Height: 1, Round: 1, Step: fencing.StepCommit}) {
		t.Fatalf("ibft2CommitSeal = %v, %v; want 1/1/commit", sl.HRS, err)
	}
	x, err := consensus.DecodeIBFT2Extra(h.Extra)
	if err != nil || len(x.Seals) != 3 {
		t.Fatalf("extraData: %v, %d seals", err, len(x.Seals))
	}
	for _, s := range x.Seals {
		if got := recoverAddress(t, sl.Digest[:], s); !slices.Contains(x.Validators, got) {
			t.Fatalf("seal recovers to %s over the derived digest, not a validator of %v", got, x.Validators)
		}
	}
}
