package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// The algorithms Herald accepts; anything else, "none" first, is refused.
const (
	algHS256 = "HS256"
	algRS256 = "RS256"
	algES256 = "ES256"
	algEdDSA = "EdDSA"
)

// MinSecretLen is the shortest HS256 secret accepted: 256 bits, the size of
// the hash, so the secret is not the weak link.
const MinSecretLen = 32

// minRSABits refuses RSA keys too small to be safe.
const minRSABits = 2048

// verifyKey is one key that can check signatures, with the one algorithm it is
// for: a key is never used with another algorithm (no RS256/HS256 confusion).
type verifyKey struct {
	kid string // empty for keys from config, which match any kid
	alg string
	key any // []byte, *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
}

// algFor returns the algorithm a public key verifies.
func algFor(pub crypto.PublicKey) (string, any, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return "", nil, fmt.Errorf("RSA key of %d bits, at least %d needed", k.N.BitLen(), minRSABits)
		}
		return algRS256, k, nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return "", nil, fmt.Errorf("EC key on %s, ES256 needs P-256", k.Curve.Params().Name)
		}
		return algES256, k, nil
	case ed25519.PublicKey:
		return algEdDSA, k, nil
	}
	return "", nil, fmt.Errorf("unsupported public key type %T (want RSA, EC P-256 or Ed25519)", pub)
}

// ParsePublicKeys reads every public key of a PEM file: PUBLIC KEY (PKIX),
// RSA PUBLIC KEY (PKCS#1) or CERTIFICATE blocks. Several keys in one file let
// an operator roll keys without a restart of the issuer.
func ParsePublicKeys(pemBytes []byte) ([]crypto.PublicKey, error) {
	var out []crypto.PublicKey
	rest := pemBytes
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		var pub crypto.PublicKey
		var err error
		switch block.Type {
		case "PUBLIC KEY":
			pub, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
				pub = cert.PublicKey
			}
		default:
			if isPrivateBlock(block.Type) {
				return nil, fmt.Errorf("PEM block %q is a private key: give Herald the public key only", block.Type)
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("PEM block %q: %w", block.Type, err)
		}
		if _, _, err := algFor(pub); err != nil {
			return nil, err
		}
		out = append(out, pub)
	}
	if len(out) == 0 {
		return nil, errors.New("no public key in PEM data")
	}
	return out, nil
}

func isPrivateBlock(t string) bool {
	switch t {
	case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY":
		return true
	}
	return false
}
