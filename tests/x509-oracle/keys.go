package x509oracle

// A pool of keys made once per run: RSA key generation is slow, and the oracle needs many
// certificates, not many keys. Leaves and CAs draw from it; a CA's look-alike draws a key
// different from the CA's.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"math/rand/v2"
)

type keyKind string

const (
	rsa2048  keyKind = "rsa2048"
	rsa3072  keyKind = "rsa3072"
	rsa4096  keyKind = "rsa4096"
	p256     keyKind = "p256"
	p384     keyKind = "p384"
	kEd25519 keyKind = "ed25519"
)

// poolSizes: how many keys of each kind the pool holds.
var poolSizes = []struct {
	kind keyKind
	n    int
}{{rsa2048, 4}, {rsa3072, 2}, {rsa4096, 2}, {p256, 6}, {p384, 4}, {kEd25519, 6}}

type key struct {
	kind   keyKind
	id     int // its index in the pool
	signer crypto.Signer
}

type keyPool map[keyKind][]key

// newKeyPool generates the pool from crypto/rand, which the test makes deterministic
// (cryptotest.SetGlobalRandom) before calling it, on one goroutine.
func newKeyPool() keyPool {
	pool := keyPool{}
	for _, s := range poolSizes {
		for i := range s.n {
			pool[s.kind] = append(pool[s.kind], key{s.kind, i, generateKey(s.kind)})
		}
	}
	return pool
}

func generateKey(kind keyKind) crypto.Signer {
	var (
		k   crypto.Signer
		err error
	)
	switch kind {
	case rsa2048, rsa3072, rsa4096:
		bits := map[keyKind]int{rsa2048: 2048, rsa3072: 3072, rsa4096: 4096}[kind]
		k, err = rsa.GenerateKey(crand.Reader, bits)
	case p256:
		k, err = ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	case p384:
		k, err = ecdsa.GenerateKey(elliptic.P384(), crand.Reader)
	case kEd25519:
		_, k, err = ed25519GenerateKey()
	}
	if err != nil {
		panic(err)
	}
	return k
}

func ed25519GenerateKey() (ed25519.PublicKey, ed25519.PrivateKey, error) {
	return ed25519.GenerateKey(crand.Reader)
}

// pick draws a key of a kind drawn with weights: CAs sign every leaf (and often its Go-view
// twin), so the slow signers (RSA-3072 and RSA-4096, and P-384 for verification) are kept
// rarer; each is still drawn thousands of times in a default run.
func (p keyPool) pick(r *rand.Rand) key {
	var kind keyKind
	switch n := r.IntN(100); {
	case n < 2:
		kind = rsa4096
	case n < 5:
		kind = rsa3072
	case n < 20:
		kind = rsa2048
	case n < 50:
		kind = p256
	case n < 60:
		kind = p384
	default:
		kind = kEd25519
	}
	list := p[kind]
	return list[r.IntN(len(list))]
}

// pickOther draws a key of the same kind as k but a different key (for look-alikes).
func (p keyPool) pickOther(r *rand.Rand, k key) key {
	list := p[k.kind]
	for {
		other := list[r.IntN(len(list))]
		if other.id != k.id {
			return other
		}
	}
}

// signatureAlgorithms lists what a key of each kind may sign with (SHA-1 and PSS are out).
func signatureAlgorithms(kind keyKind) []x509.SignatureAlgorithm {
	switch kind {
	case p256, p384:
		return []x509.SignatureAlgorithm{x509.ECDSAWithSHA256, x509.ECDSAWithSHA384, x509.ECDSAWithSHA512}
	case kEd25519:
		return []x509.SignatureAlgorithm{x509.PureEd25519}
	}
	return []x509.SignatureAlgorithm{x509.SHA256WithRSA, x509.SHA384WithRSA, x509.SHA512WithRSA}
}
