package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"strings"
)

// MinPublishKeyLen is the shortest publish key accepted.
const MinPublishKeyLen = 16

// KeyRing holds the static publish keys. Several keys, each with a name, let an
// operator rotate: add the new key, move the back ends over, remove the old one.
type KeyRing struct {
	keys []namedKey
}

type namedKey struct {
	name string
	hash [sha256.Size]byte
}

// ParseKeyRing reads entries of the form "name=KEY" or a bare "KEY" (named
// after the start of its SHA-256, so logs and metrics never hold the key).
func ParseKeyRing(entries []string) (*KeyRing, error) {
	r := &KeyRing{}
	seen := map[string]bool{}
	for _, e := range entries {
		name, key := splitNamedKey(e)
		if len(key) < MinPublishKeyLen {
			return nil, fmt.Errorf("publish key %q is %d bytes, at least %d needed", name, len(key), MinPublishKeyLen)
		}
		if seen[name] {
			return nil, fmt.Errorf("publish key name %q given twice", name)
		}
		seen[name] = true
		r.keys = append(r.keys, namedKey{name: name, hash: sha256.Sum256([]byte(key))})
	}
	return r, nil
}

// splitNamedKey splits "name=KEY". Base64 keys may end in '=', so the part
// before '=' counts as a name only when it is a plausible name and a real key
// follows.
func splitNamedKey(e string) (name, key string) {
	if n, k, ok := strings.Cut(e, "="); ok && validKeyName(n) && len(k) >= MinPublishKeyLen {
		return n, k
	}
	sum := sha256.Sum256([]byte(e))
	return "sha256:" + hex.EncodeToString(sum[:4]), e
}

func validKeyName(n string) bool {
	if n == "" || len(n) > 64 {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// Len is the number of keys.
func (r *KeyRing) Len() int {
	if r == nil {
		return 0
	}
	return len(r.keys)
}

// Names lists the keys' names, for the startup log.
func (r *KeyRing) Names() []string {
	if r == nil {
		return nil
	}
	out := make([]string, len(r.keys))
	for i, k := range r.keys {
		out[i] = k.name
	}
	return out
}

// Lookup returns the name of the key equal to presented. Comparing hashes in
// constant time reveals neither a key's bytes nor its length.
func (r *KeyRing) Lookup(presented string) (name string, ok bool) {
	if r == nil {
		return "", false
	}
	h := sha256.Sum256([]byte(presented))
	for _, k := range r.keys {
		if subtle.ConstantTimeCompare(h[:], k.hash[:]) == 1 {
			name, ok = k.name, true
		}
	}
	return name, ok
}
