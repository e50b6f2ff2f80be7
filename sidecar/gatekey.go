package sidecar

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/ethereum/go-ethereum/accounts/keystore"
	"github.com/ethereum/go-ethereum/crypto"
)

// Key file formats the gate writes (--gate-key-format).
const (
	// KeyFormatHex is the private key as 64 hex digits and a newline:
	// Besu's --node-private-key-file, geth's --nodekey.
	KeyFormatHex = "hex"
	// KeyFormatKeystore is a keystore V3 JSON file encrypted with
	// --gate-password-file: geth's --keystore directory with --unlock and
	// --password.
	KeyFormatKeystore = "keystore"
)

// keyFile is the validator key as the client reads it, written only while
// the gate runs the validator, on a memory-backed file system, mode 0400.
// Its String never shows the secret.
type keyFile struct {
	file string
	data []byte
}

var _ keyRelease = (*keyFile)(nil)

func (k *keyFile) String() string { return "key file " + k.file }

// newKeyFile prepares the bytes of path in format for key. A keystore is
// encrypted with passwordFile (--gate-password-file, which the client is
// given too) and the light scrypt parameters: the client decrypts it at
// every start, on the bump's path, and the password file lies next to it.
func newKeyFile(path, format string, key *Key, passwordFile string) (*keyFile, error) {
	if err := checkMemoryBacked(filepath.Dir(path)); err != nil {
		return nil, err
	}
	switch format {
	case KeyFormatHex:
		b := make([]byte, 0, 65)
		b = hex.AppendEncode(b, crypto.FromECDSA(key.priv))
		return &keyFile{file: path, data: append(b, '\n')}, nil
	case KeyFormatKeystore:
		pw, err := os.ReadFile(passwordFile)
		if err != nil {
			return nil, fmt.Errorf("--gate-password-file: %w", err)
		}
		defer clear(pw)
		data, err := keystore.EncryptKey(&keystore.Key{Address: key.Address, PrivateKey: key.priv}, strings.TrimRight(string(pw), "\r\n"), keystore.LightScryptN, keystore.LightScryptP)
		if err != nil {
			return nil, fmt.Errorf("encrypt the key for %s: %w", path, err)
		}
		return &keyFile{file: path, data: data}, nil
	}
	return nil, fmt.Errorf("--gate-key-format %q must be %s or %s", format, KeyFormatHex, KeyFormatKeystore)
}

func (k *keyFile) path() string { return k.file }

// tmp is where write puts the bytes before the rename. Its name starts with
// a dot: geth's keystore scan skips it.
func (k *keyFile) tmp() string {
	return filepath.Join(filepath.Dir(k.file), "."+filepath.Base(k.file)+".tmp")
}

// write creates the file with mode 0400 under a temporary name and renames
// it into place: the client never reads half a key.
func (k *keyFile) write() error {
	tmp := k.tmp()
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o400)
	if err != nil {
		return err
	}
	_, err = f.Write(k.data)
	if err = errors.Join(err, f.Sync(), f.Close()); err == nil {
		err = os.Rename(tmp, k.file)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	// No fsync of the directory: the file is on tmpfs, and must not outlive
	// the machine anyway.
	return err
}

// remove deletes the file (and a temporary one) and confirms it is gone.
func (k *keyFile) remove() error {
	var errs []error
	for _, p := range []string{k.tmp(), k.file} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("%s is still there after its removal (%v)", p, err))
		}
	}
	return errors.Join(errs...)
}
