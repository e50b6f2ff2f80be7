package sidecar

import (
	"crypto/ecdsa"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/ethereum/go-ethereum/accounts/keystore"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/validator-fencing/fencing/internal/api"
)

// Key is one validator's signing key. Its String never shows the secret.
type Key struct {
	Address common.Address
	priv    *ecdsa.PrivateKey
}

func (k *Key) String() string { return "key(" + k.Address.Hex() + ")" }

// PublicKey is the uncompressed public key without its 0x04 prefix (64
// bytes), as Web3Signer lists it.
func (k *Key) PublicKey() []byte { return crypto.FromECDSAPub(&k.priv.PublicKey)[1:] }

// sign signs a 32-byte digest: R‖S‖V with V 0 or 1 (deterministic, RFC 6979).
// Only the gate calls it, after every fencing check passed.
func (k *Key) sign(digest []byte) ([]byte, error) { return crypto.Sign(digest, k.priv) }

// LoadKey reads a go-ethereum keystore V3 JSON file (with passwordFile) or a
// file holding one hex private key. The key file must not be accessible to
// others nor writable by its group; errors never contain key material.
func LoadKey(path, passwordFile string) (*Key, error) {
	if err := api.CheckSecretFile(path, "key file"); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	defer clear(data)
	trimmed := strings.TrimSpace(string(data))
	if strings.HasPrefix(trimmed, "{") {
		return loadKeystore(path, data, passwordFile)
	}
	if passwordFile != "" {
		return nil, fmt.Errorf("key file %s holds a hex key, not keystore JSON; --password-file applies only to keystore files", path)
	}
	h := strings.TrimPrefix(strings.TrimPrefix(trimmed, "0x"), "0X")
	if len(h) != 64 {
		return nil, fmt.Errorf("key file %s: want 64 hex digits (a secp256k1 private key) or keystore V3 JSON, got %d characters", path, len(h))
	}
	raw, err := hex.DecodeString(h)
	if err != nil {
		return nil, fmt.Errorf("key file %s: not hex", path)
	}
	defer clear(raw)
	priv, err := crypto.ToECDSA(raw)
	if err != nil {
		return nil, fmt.Errorf("key file %s: not a valid secp256k1 private key", path)
	}
	return &Key{Address: crypto.PubkeyToAddress(priv.PublicKey), priv: priv}, nil
}

func loadKeystore(path string, data []byte, passwordFile string) (*Key, error) {
	if passwordFile == "" {
		return nil, fmt.Errorf("key file %s is keystore JSON: give --password-file", path)
	}
	if !json.Valid(data) {
		return nil, fmt.Errorf("key file %s: not valid JSON", path)
	}
	pw, err := os.ReadFile(passwordFile)
	if err != nil {
		return nil, fmt.Errorf("password file: %w", err)
	}
	defer clear(pw)
	k, err := keystore.DecryptKey(data, strings.TrimRight(string(pw), "\r\n"))
	if err != nil {
		return nil, fmt.Errorf("key file %s: cannot decrypt with the password file (%v)", path, err)
	}
	return &Key{Address: k.Address, priv: k.PrivateKey}, nil
}
