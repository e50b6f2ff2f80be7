package audit

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/rlp"
	"github.com/ethereum/go-ethereum/rpc"

	"github.com/validator-fencing/fencing/internal/consensus"
)

// testKey returns a fixed key so that test runs are reproducible.
func testKey(t testing.TB, i int) *ecdsa.PrivateKey {
	t.Helper()
	k, err := crypto.ToECDSA(common.LeftPadBytes(big.NewInt(int64(1000+i)).Bytes(), 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func addr(k *ecdsa.PrivateKey) common.Address { return crypto.PubkeyToAddress(k.PublicKey) }

func baseHeader(number uint64, parent common.Hash, salt byte) *types.Header {
	return &types.Header{
		ParentHash:  parent,
		UncleHash:   types.EmptyUncleHash,
		Root:        common.Hash{salt, byte(number)},
		TxHash:      types.EmptyTxsHash,
		ReceiptHash: types.EmptyReceiptsHash,
		Difficulty:  big.NewInt(2),
		Number:      new(big.Int).SetUint64(number),
		GasLimit:    30_000_000,
		Time:        1_700_000_000 + number*5 + uint64(salt),
	}
}

// cliqueHeader builds a header sealed by signer (EIP-225).
func cliqueHeader(t testing.TB, number uint64, parent common.Hash, salt byte, signer *ecdsa.PrivateKey) (*types.Header, common.Hash) {
	t.Helper()
	h := baseHeader(number, parent, salt)
	h.Extra = make([]byte, consensus.VanityLength+consensus.SealLength)
	h.Extra[0] = salt
	sh, err := consensus.CliqueSealHash(h)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := crypto.Sign(sh[:], signer)
	if err != nil {
		t.Fatal(err)
	}
	copy(h.Extra[consensus.VanityLength:], sig)
	return h, h.Hash()
}

// bftHeader builds a QBFT or IBFT 2.0 header proposed by coinbase in round
// and committed by committers, following Besu's codecs.
func bftHeader(t testing.TB, c consensus.Consensus, number uint64, parent common.Hash, salt byte, round uint64,
	validators []common.Address, coinbase common.Address, committers []*ecdsa.PrivateKey) (*types.Header, common.Hash) {
	t.Helper()
	h := baseHeader(number, parent, salt)
	h.Difficulty = big.NewInt(1)
	h.MixDigest = consensus.IstanbulDigest
	h.Coinbase = coinbase
	vanity := make([]byte, consensus.VanityLength)
	vanity[0] = salt
	vals := make([][]byte, len(validators))
	for i, v := range validators {
		vals[i] = v.Bytes()
	}
	var vote, roundItem []byte
	switch c {
	case consensus.ConsensusQBFT:
		vote = []byte{0xc0}
		roundItem, _ = rlp.EncodeToBytes(round)
	case consensus.ConsensusIBFT2:
		vote = []byte{0x80}
		roundItem, _ = rlp.EncodeToBytes([]byte{byte(round >> 24), byte(round >> 16), byte(round >> 8), byte(round)})
	}
	enc := func(seals [][]byte) []byte {
		rv, _ := rlp.EncodeToBytes(vanity)
		rvals, _ := rlp.EncodeToBytes(vals)
		rseals, _ := rlp.EncodeToBytes(seals)
		out, _ := rlp.MergeListValues([][]byte{rv, rvals, vote, roundItem, rseals})
		return out
	}
	h.Extra = enc([][]byte{})
	sealHash, err := consensus.CommittedSealHash(h, c)
	if err != nil {
		t.Fatal(err)
	}
	var seals [][]byte
	for _, k := range committers {
		sig, err := crypto.Sign(sealHash[:], k)
		if err != nil {
			t.Fatal(err)
		}
		seals = append(seals, sig)
	}
	h.Extra = enc(seals)
	hash, err := consensus.BlockHash(h, c)
	if err != nil {
		t.Fatal(err)
	}
	return h, hash
}

// headerJSON renders h as eth_getBlockByNumber(n, false) does, with the given
// reported hash.
func headerJSON(h *types.Header, hash common.Hash) json.RawMessage {
	m := map[string]any{
		"hash":             hash,
		"parentHash":       h.ParentHash,
		"sha3Uncles":       h.UncleHash,
		"miner":            h.Coinbase,
		"stateRoot":        h.Root,
		"transactionsRoot": h.TxHash,
		"receiptsRoot":     h.ReceiptHash,
		"logsBloom":        h.Bloom,
		"difficulty":       (*hexutil.Big)(h.Difficulty),
		"number":           (*hexutil.Big)(h.Number),
		"gasLimit":         hexutil.Uint64(h.GasLimit),
		"gasUsed":          hexutil.Uint64(h.GasUsed),
		"timestamp":        hexutil.Uint64(h.Time),
		"extraData":        hexutil.Bytes(h.Extra),
		"mixHash":          h.MixDigest,
		"nonce":            h.Nonce,
		"totalDifficulty":  "0x1",
		"size":             "0x200",
		"transactions":     []string{},
		"uncles":           []string{},
	}
	if h.BaseFee != nil {
		m["baseFeePerGas"] = (*hexutil.Big)(h.BaseFee)
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err) // test helper on well-formed input
	}
	return b
}

// chainService is a JSON-RPC "eth" namespace serving recorded headers.
type chainService struct {
	mu      sync.Mutex
	headers map[uint64]json.RawMessage
	head    uint64
	calls   atomic.Int64
}

func newChainService() *chainService { return &chainService{headers: map[uint64]json.RawMessage{}} }

func (s *chainService) put(n uint64, raw json.RawMessage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.headers[n] = raw
	s.head = max(s.head, n)
}

// GetBlockByNumber serves eth_getBlockByNumber.
func (s *chainService) GetBlockByNumber(ctx context.Context, n rpc.BlockNumber, full bool) (json.RawMessage, error) {
	s.calls.Add(1)
	if full {
		return nil, fmt.Errorf("this test server serves headers only")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if n < 0 {
		n = rpc.BlockNumber(s.head)
	}
	raw, ok := s.headers[uint64(n)]
	if !ok {
		return json.RawMessage("null"), nil
	}
	return raw, nil
}

// BlockNumber serves eth_blockNumber.
func (s *chainService) BlockNumber() hexutil.Uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return hexutil.Uint64(s.head)
}

// serve starts a real go-ethereum JSON-RPC server for svc on 127.0.0.1.
func serve(t testing.TB, svc *chainService) string {
	t.Helper()
	srv := rpc.NewServer()
	if err := srv.RegisterName("eth", svc); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(func() { ts.Close(); srv.Stop() })
	return ts.URL
}

// serveHandler starts an HTTP server with a custom (faulty) handler.
func serveHandler(t testing.TB, h http.Handler) string {
	t.Helper()
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts.URL
}

// fastConfig keeps retries short for tests.
func fastConfig(eps ...string) ChainConfig {
	return ChainConfig{Endpoints: eps, From: 1, Concurrency: 2, Batch: 8, Timeout: 2e9, Retries: 1, Backoff: 5e6, MaxFailures: 2}
}
