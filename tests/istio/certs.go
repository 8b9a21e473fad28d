package oracle

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"testing"
	"time"
)

// Keypair is a certificate and its key, both PEM.
type Keypair struct {
	Cert, Key string
	cert      *x509.Certificate
	signer    crypto.Signer
}

// CertificateTemplate describes a certificate to make.
type CertificateTemplate struct {
	CommonName string
	// SameSubjectAs, when set, gives the certificate that certificate's subject, byte for byte
	// (a look-alike CA).
	SameSubjectAs *Keypair
	DNSNames      []string
	URIs          []string
	CA            bool
	Usage         []x509.ExtKeyUsage
	NotAfter      time.Time
}

// LookAlikeCA makes a root of its own key whose subject is byte for byte the given one's.
func LookAlikeCA(t testing.TB, of Keypair) Keypair {
	t.Helper()
	return Issue(t, nil, CertificateTemplate{SameSubjectAs: &of, CA: true})
}

// NewCA makes a self-signed root (ECDSA P-256).
func NewCA(t testing.TB, commonName string) Keypair {
	t.Helper()
	return Issue(t, nil, CertificateTemplate{CommonName: commonName, CA: true})
}

// Issue makes a certificate signed by parent, or self-signed when parent is nil.
func Issue(t testing.TB, parent *Keypair, spec CertificateTemplate) Keypair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	notAfter := spec.NotAfter
	if notAfter.IsZero() {
		notAfter = time.Now().Add(24 * time.Hour)
	}
	template := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: spec.CommonName},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              notAfter,
		DNSNames:              spec.DNSNames,
		BasicConstraintsValid: true,
		IsCA:                  spec.CA,
		ExtKeyUsage:           spec.Usage,
	}
	if spec.SameSubjectAs != nil {
		template.RawSubject = spec.SameSubjectAs.cert.RawSubject
	}
	for _, u := range spec.URIs {
		parsed, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		template.URIs = append(template.URIs, parsed)
	}
	if spec.CA {
		template.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	} else {
		template.KeyUsage = x509.KeyUsageDigitalSignature
	}
	issuer, signer := template, crypto.Signer(key)
	if parent != nil {
		issuer, signer = parent.cert, parent.signer
	}
	der, err := x509.CreateCertificate(rand.Reader, template, issuer, key.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return Keypair{
		Cert:   string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		Key:    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})),
		cert:   cert,
		signer: key,
	}
}

// LoadKeypair reads a certificate and its PKCS#8 key (as `peergate gen` writes them), to
// sign more certificates with it.
func LoadKeypair(t testing.TB, certFile, keyFile string) Keypair {
	t.Helper()
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatalf("%s: no PEM", certFile)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	keyBlock, _ := pem.Decode(keyPEM)
	if keyBlock == nil {
		t.Fatalf("%s: no PEM", keyFile)
	}
	key, err := x509.ParsePKCS8PrivateKey(keyBlock.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", keyFile, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		t.Fatalf("%s: not a signing key", keyFile)
	}
	return Keypair{Cert: string(certPEM), Key: string(keyPEM), cert: cert, signer: signer}
}
