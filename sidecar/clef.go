package sidecar

import (
	"bytes"
	"context"
	"encoding/json"
	"mime"
	"net/http"
	"strings"

	"github.com/ethereum/go-ethereum/accounts"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/rpc"
	"github.com/ethereum/go-ethereum/signer/core/apitypes"
	"github.com/hashicorp/go-hclog"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/fencing"
)

// Clef's external-signer JSON-RPC, served by go-ethereum's own rpc server on
// POST / of the signing listener, so the sidecar's base URL is what
// `geth --signer` and accounts/external are given:
//
//	account_version          the Clef external API version
//	account_list             the addresses of the sidecar's keys
//	account_signData         application/x-clique-header: a Clique seal, through the
//	                         watermark at (number, 0, block), V 0 or 1;
//	                         text/plain: personal_sign (EIP-191 0x45), epoch fence only, V 27 or 28
//	account_signTransaction  apitypes.SendTxArgs with a chainId → {"raw","tx"}, epoch fence only
//
// data/typed and data/validator are refused: a validator never needs them and
// they carry no HRS. Every error is a JSON-RPC error whose message starts
// with its code word ("fenced: …") and whose data is {"code": <code word>}.

// clefAPIVersion is the version of Clef's external API that the methods
// above follow (clef's ExternalAPIVersion).
const clefAPIVersion = "6.1.0"

// clefMaxBody bounds a JSON-RPC request: room for a contract creation, far
// below what could hurt.
const clefMaxBody = 1 << 20

// JSON-RPC error codes: invalid params for bad input, server error for
// refusals.
const (
	rpcInvalidParams = -32602
	rpcRefused       = -32000
	rpcInvalidReq    = -32600
)

func (s *Server) clefRoutes(mux *http.ServeMux) {
	rs := rpc.NewServer()
	rs.SetHTTPBodyLimit(clefMaxBody)
	if err := rs.RegisterName("account", &clefService{signer: s.signer, lg: s.lg}); err != nil {
		panic(err) // only a clefService without RPC methods fails here: a bug every test catches
	}
	mux.HandleFunc("POST /{$}", func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > clefMaxBody {
			err := fencing.Errorf(fencing.CodeBadRequest, "request body is larger than %d bytes", clefMaxBody)
			api.WriteJSON(w, http.StatusRequestEntityTooLarge, map[string]any{"jsonrpc": "2.0", "id": nil, "error": rpcErrorObject(rpcInvalidReq, clefError{err})})
			return
		}
		rs.ServeHTTP(w, r)
	})
}

func rpcErrorObject(code int, e clefError) map[string]any {
	return map[string]any{"code": code, "message": e.Error(), "data": e.ErrorData()}
}

// clefService is the "account" namespace. Every exported method is an RPC
// method (account_<lowercase first letter>).
type clefService struct {
	signer *Signer
	lg     hclog.Logger
}

// Version is account_version.
func (c *clefService) Version() string { return clefAPIVersion }

// List is account_list.
func (c *clefService) List() []common.Address {
	out := []common.Address{}
	for _, v := range c.signer.Validators() {
		out = append(out, v.Key.Address)
	}
	return out
}

// SignData is account_signData(contentType, address, data).
func (c *clefService) SignData(ctx context.Context, contentType string, addr string, data json.RawMessage) (hexutil.Bytes, error) {
	req, err := decodeSignData(contentType, addr, data)
	if err != nil {
		return nil, c.refuse("account_signData", err)
	}
	var res SignResult
	if req.seal != nil {
		res, err = c.signer.SignHRS(ctx, req.validator, req.seal.HRS, req.seal.Digest)
	} else {
		res, err = c.signer.SignDigest(ctx, req.validator, req.digest)
	}
	if err != nil {
		return nil, c.refuse("account_signData", err)
	}
	sig := bytes.Clone(res.Signature)
	if req.legacyV {
		sig[64] += 27
	}
	return sig, nil
}

// clefSignData is a decoded account_signData request: a seal (through the
// watermark) or a bare digest (epoch fence only).
type clefSignData struct {
	validator fencing.ValidatorID
	seal      *seal
	digest    fencing.Digest
	legacyV   bool // V as 27/28, as Clef writes it for everything but Clique
}

// decodeSignData checks an account_signData request as Clef would and
// derives what to sign. Content types other than the two a validator needs
// are refused rather than treated as text/plain (Clef's default).
func decodeSignData(contentType, addr string, data json.RawMessage) (clefSignData, error) {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return clefSignData{}, fencing.Errorf(fencing.CodeBadRequest, "content type %.80q: %v", contentType, err)
	}
	validator, err := clefAddress(addr)
	if err != nil {
		return clefSignData{}, err
	}
	raw, err := decodeHex("data", data)
	if err != nil {
		return clefSignData{}, err
	}
	switch mt {
	case accounts.MimetypeClique:
		sl, err := cliqueSigningForm(raw)
		if err != nil {
			return clefSignData{}, err
		}
		return clefSignData{validator: validator, seal: &sl}, nil
	case accounts.MimetypeTextPlain:
		return clefSignData{validator: validator, digest: fencing.Digest(accounts.TextHash(raw)), legacyV: true}, nil
	case accounts.MimetypeTypedData, accounts.MimetypeDataWithValidator:
		return clefSignData{}, fencing.Errorf(fencing.CodeBadRequest, "content type %s is not signed by the sidecar: a validator needs only %s and %s", mt, accounts.MimetypeClique, accounts.MimetypeTextPlain)
	default:
		return clefSignData{}, fencing.Errorf(fencing.CodeBadRequest, "unknown content type %.80q: the sidecar signs %s and %s", mt, accounts.MimetypeClique, accounts.MimetypeTextPlain)
	}
}

// clefAddress checks that addr is an address; the gate then says whether
// this sidecar holds its key.
func clefAddress(addr string) (fencing.ValidatorID, error) {
	if !common.IsHexAddress(addr) || !strings.HasPrefix(strings.ToLower(addr), "0x") {
		return "", fencing.Errorf(fencing.CodeBadRequest, "account %.80q is not a 0x-prefixed 20-byte address", addr)
	}
	return fencing.ValidatorID(common.HexToAddress(addr).Hex()), nil // EIP-55: canonical
}

// clefTxResult is account_signTransaction's result, as Clef returns it.
type clefTxResult struct {
	Raw hexutil.Bytes      `json:"raw"`
	Tx  *types.Transaction `json:"tx"`
}

// SignTransaction is account_signTransaction(args, methodSelector?). The
// sidecar has no configured chain, so args must name its chainId (geth's
// external client does when it knows the chain).
func (c *clefService) SignTransaction(ctx context.Context, args json.RawMessage, _ *string) (*clefTxResult, error) {
	from, tx, signer, err := decodeSendTx(args)
	if err != nil {
		return nil, c.refuse("account_signTransaction", err)
	}
	res, err := c.signer.SignDigest(ctx, from, fencing.Digest(signer.Hash(tx)))
	if err != nil {
		return nil, c.refuse("account_signTransaction", err)
	}
	signed, err := tx.WithSignature(signer, res.Signature)
	if err != nil {
		return nil, c.refuse("account_signTransaction", fencing.Errorf(fencing.CodeInternal, "attach signature: %v", err))
	}
	raw, err := signed.MarshalBinary()
	if err != nil {
		return nil, c.refuse("account_signTransaction", fencing.Errorf(fencing.CodeInternal, "encode transaction: %v", err))
	}
	return &clefTxResult{Raw: raw, Tx: signed}, nil
}

// decodeSendTx reads apitypes.SendTxArgs strictly and builds the unsigned
// transaction and its signer. Blob transactions are refused.
func decodeSendTx(b json.RawMessage) (fencing.ValidatorID, *types.Transaction, types.Signer, error) {
	var a apitypes.SendTxArgs
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return "", nil, nil, fencing.Errorf(fencing.CodeBadRequest, "transaction arguments: %v", strings.TrimPrefix(err.Error(), "json: "))
	}
	bad := func(format string, args ...any) (fencing.ValidatorID, *types.Transaction, types.Signer, error) {
		return "", nil, nil, fencing.Errorf(fencing.CodeBadRequest, format, args...)
	}
	from, err := clefAddress(a.From.Original())
	switch {
	case err != nil:
		return "", nil, nil, err
	case a.ChainID == nil || a.ChainID.ToInt().Sign() <= 0:
		return bad("transaction needs a positive chainId: the sidecar signs only replay-protected transactions and has no chain configured")
	case a.BlobHashes != nil || a.Blobs != nil || a.Commitments != nil || a.Proofs != nil || a.BlobFeeCap != nil:
		return bad("blob transactions are not signed by the sidecar")
	case a.Data != nil && a.Input != nil && !bytes.Equal(*a.Data, *a.Input):
		return bad(`transaction has both "data" and "input" and they differ`)
	case a.GasPrice != nil && (a.MaxFeePerGas != nil || a.MaxPriorityFeePerGas != nil):
		return bad("transaction sets both gasPrice and maxFeePerGas/maxPriorityFeePerGas")
	case a.GasPrice == nil && (a.MaxFeePerGas == nil || a.MaxPriorityFeePerGas == nil):
		return bad("transaction needs gasPrice, or both maxFeePerGas and maxPriorityFeePerGas")
	}
	tx, err := a.ToTransaction()
	if err != nil {
		return bad("transaction arguments: %v", err)
	}
	return from, tx, types.LatestSignerForChainID(a.ChainID.ToInt()), nil
}

// refuse logs a refusal (never key material) and turns it into a JSON-RPC
// error.
func (c *clefService) refuse(method string, err error) error {
	c.lg.Debug("signature refused", "method", method, "code", fencing.CodeOf(err), "error", err)
	return clefError{err}
}

// clefError is a refusal or bad input as a JSON-RPC error: the message
// starts with the code word and the data carries it.
type clefError struct{ err error }

func (e clefError) Error() string {
	code := string(fencing.CodeOf(e.err))
	if msg := e.err.Error(); strings.HasPrefix(msg, code+":") {
		return msg
	}
	return code + ": " + e.err.Error()
}

// ErrorCode makes it an rpc.Error.
func (e clefError) ErrorCode() int {
	if fencing.CodeOf(e.err) == fencing.CodeBadRequest {
		return rpcInvalidParams
	}
	return rpcRefused
}

// ErrorData makes it an rpc.DataError.
func (e clefError) ErrorData() any { return map[string]fencing.Code{"code": fencing.CodeOf(e.err)} }

var (
	_ rpc.Error     = clefError{}
	_ rpc.DataError = clefError{}
)
