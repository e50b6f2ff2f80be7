package sidecar

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/fencing"
)

// digestServer serves r's signer with POST /v1/sign/digest on or off.
func digestServer(t *testing.T, r *surfaceRig, on bool) string {
	t.Helper()
	hs := httptest.NewServer((&Server{signer: r.signer, lg: hclog.NewNullLogger(), gatherer: prometheus.NewRegistry(), bareDigest: on}).SigningHandler())
	t.Cleanup(hs.Close)
	return hs.URL
}

func postDigest(t *testing.T, url, body string) (int, []byte) {
	t.Helper()
	rig := &surfaceRig{url: url}
	return rig.post(t, "/v1/sign/digest", "application/json", []byte(body))
}

// POST /v1/sign/digest signs the digest itself (no hashing) under the epoch
// fence, refuses once the validator is bumped away, and is off by default.
func TestSignDigest(t *testing.T) {
	for _, mode := range []Mode{ModeStrict, ModeLease} {
		t.Run(string(mode), func(t *testing.T) {
			r := newSurfaceRig(t, rigOptions{mode: mode})
			on, off := digestServer(t, r, true), digestServer(t, r, false)
			digest := fencing.Digest{0xfe, 1, 2, 3}
			body := `{"validator":"` + r.ids[0] + `","digest":"` + digest.String() + `"}`

			status, res := postDigest(t, off, body)
			wantCode(t, "POST /v1/sign/digest without --bare-digest", status, res, http.StatusForbidden, fencing.CodeForbidden)

			// The same digest twice: no HRS, so no watermark refuses the second.
			for i := range 2 {
				status, res = postDigest(t, on, body)
				if status != http.StatusOK {
					t.Fatalf("POST /v1/sign/digest #%d = %d %s, want 200", i, status, res)
				}
				var sr SignResponse
				if err := json.Unmarshal(res, &sr); err != nil || sr.Epoch != 1 {
					t.Fatalf("POST /v1/sign/digest = %s (%v), want a signature at epoch 1", res, err)
				}
				sig, err := hexutil.Decode(sr.Signature)
				if err != nil || len(sig) != 65 || sig[64] > 1 {
					t.Fatalf("signature %q, want 0x-hex of 65 bytes with V 0 or 1", sr.Signature)
				}
				if got := recoverAddress(t, digest[:], sig); got != r.address(0) {
					t.Fatalf("ecrecover(digest, sig) = %s, want %s", got, r.address(0))
				}
			}

			r.coord.Bump(t, r.ids[0], "region-b")
			status, res = postDigest(t, on, body)
			wantCode(t, "POST /v1/sign/digest after the bump to region-b", status, res, http.StatusPreconditionFailed, fencing.CodeFenced, fencing.CodeStaleEpoch)
		})
	}
}

func TestSignDigestRejectsBadInput(t *testing.T) {
	r := newSurfaceRig(t, rigOptions{})
	url := digestServer(t, r, true)
	id := r.ids[0]
	digest := fencing.Digest{1}.String()
	for _, tc := range []struct{ name, body string }{
		{"malformed JSON", `{"validator":`},
		{"trailing data", `{"validator":"` + id + `","digest":"` + digest + `"} {}`},
		{"unknown field", `{"validator":"` + id + `","digest":"` + digest + `","height":1}`},
		{"short digest", `{"validator":"` + id + `","digest":"0x1234"}`},
		{"long digest", `{"validator":"` + id + `","digest":"` + digest + `00"}`},
		{"non-hex digest", `{"validator":"` + id + `","digest":"0x` + strings.Repeat("zz", 32) + `"}`},
		{"no digest", `{"validator":"` + id + `"}`},
		{"unknown validator", `{"validator":"0x0000000000000000000000000000000000000001","digest":"` + digest + `"}`},
		{"oversized", `{"validator":"` + strings.Repeat("a", api.MaxBodyBytes) + `"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := postDigest(t, url, tc.body)
			wantCode(t, "POST /v1/sign/digest", status, body, http.StatusBadRequest, fencing.CodeBadRequest)
		})
	}
}

// FuzzDigestSignRequest: the POST /v1/sign/digest body.
func FuzzDigestSignRequest(f *testing.F) {
	f.Add([]byte(`{"validator":"v","digest":"0x0101010101010101010101010101010101010101010101010101010101010101"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var req DigestSignRequest
		if err := decodeBody(body, &req); err != nil {
			wantBadRequest(t, "DigestSignRequest", err)
			return
		}
		b, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		var again DigestSignRequest
		if err := decodeBody(b, &again); err != nil || again != req {
			t.Fatalf("round trip of %+v = %+v, %v", req, again, err)
		}
	})
}
