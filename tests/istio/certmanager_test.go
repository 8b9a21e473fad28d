package oracle

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	gotls "crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Issue 19: certificates = "cert-manager". cert-manager's part is played here, as its CA
// issuer does it (pkg/issuer/ca and pkg/util/pki of cert-manager): for each Certificate, a
// key of spec.privateKey, a leaf with the spec's names, usages and duration, signed with the
// Issuer's CA Secret, written to spec.secretName as kubernetes.io/tls with tls.crt (the leaf
// and the CA chain up to, not including, a self-signed root), tls.key (PKCS#8) and ca.crt (the
// top-most CA: ParseSingleCertificateChain). A renewal does it again with a new key
// (rotationPolicy: Always).

// certManager is the stand-in: the Secrets it has written, by namespace/name.
type certManager struct {
	t       *testing.T
	secrets map[string]*unstructured.Unstructured
	// caCrt, when set, is written as ca.crt instead of the top-most CA: an issuer whose
	// ca.crt is not the agreed root (a Vault or step-ca intermediate, istio/istio #29856).
	caCrt string
}

func secretBytes(t *testing.T, obj *unstructured.Unstructured, key string) []byte {
	t.Helper()
	encoded, _, _ := unstructured.NestedString(obj.Object, "data", key)
	data, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		t.Fatalf("Secret %s/%s key %s: %v", obj.GetNamespace(), obj.GetName(), key, err)
	}
	return data
}

// Reconcile issues every Certificate of objects anew.
func (c *certManager) Reconcile(objects []*unstructured.Unstructured) {
	c.t.Helper()
	for _, certificate := range OfKind(objects, "Certificate") {
		c.issue(objects, certificate)
	}
}

func (c *certManager) issue(objects []*unstructured.Unstructured, certificate *unstructured.Unstructured) {
	t := c.t
	t.Helper()
	ns := certificate.GetNamespace()
	spec := certificate.Object["spec"].(map[string]any)
	ref := spec["issuerRef"].(map[string]any)
	if ref["kind"] != "Issuer" || ref["group"] != "cert-manager.io" {
		t.Fatalf("the stand-in plays cert-manager's CA Issuer, not %v", ref)
	}
	var caSecretName string
	for _, issuer := range OfKind(objects, "Issuer") {
		if issuer.GetNamespace() == ns && issuer.GetName() == ref["name"] {
			caSecretName, _, _ = unstructured.NestedString(issuer.Object, "spec", "ca", "secretName")
		}
	}
	if caSecretName == "" {
		t.Fatalf("Certificate %s/%s names Issuer %v, which cluster's objects do not have", ns, certificate.GetName(), ref["name"])
	}
	var caSecret *unstructured.Unstructured
	for _, s := range OfKind(objects, "Secret") {
		if s.GetNamespace() == ns && s.GetName() == caSecretName {
			caSecret = s
		}
	}
	if caSecret == nil {
		t.Fatalf("no CA Secret %s/%s", ns, caSecretName)
	}
	var chain []*x509.Certificate
	rest := secretBytes(t, caSecret, "tls.crt")
	for {
		block, more := pem.Decode(rest)
		if block == nil {
			break
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, cert)
		rest = more
	}
	keyBlock, _ := pem.Decode(secretBytes(t, caSecret, "tls.key"))
	caKey, err := x509.ParsePKCS8PrivateKey(keyBlock.Bytes)
	if err != nil {
		t.Fatalf("CA Secret key: %v", err)
	}

	privateKey := spec["privateKey"].(map[string]any)
	if privateKey["rotationPolicy"] != "Always" {
		t.Errorf("privateKey.rotationPolicy is %v, want Always", privateKey["rotationPolicy"])
	}
	size, _ := toInt64(privateKey["size"])
	var key crypto.Signer
	switch privateKey["algorithm"] {
	case "RSA":
		key, err = rsa.GenerateKey(rand.Reader, int(size))
	case "ECDSA":
		curve := map[int64]elliptic.Curve{256: elliptic.P256(), 384: elliptic.P384()}[size]
		key, err = ecdsa.GenerateKey(curve, rand.Reader)
	case "Ed25519":
		_, key, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("privateKey.algorithm %v", privateKey["algorithm"])
	}
	if err != nil {
		t.Fatal(err)
	}
	duration, err := time.ParseDuration(spec["duration"].(string))
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	template := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: fmt.Sprint(spec["commonName"])},
		NotBefore:             time.Now(),
		NotAfter:              time.Now().Add(duration),
		BasicConstraintsValid: true,
	}
	list := func(field string) []string {
		var out []string
		list, _ := spec[field].([]any)
		for _, v := range list {
			out = append(out, v.(string))
		}
		return out
	}
	template.DNSNames = list("dnsNames")
	template.EmailAddresses = list("emailAddresses")
	for _, u := range list("uris") {
		parsed, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		template.URIs = append(template.URIs, parsed)
	}
	for _, ip := range list("ipAddresses") {
		template.IPAddresses = append(template.IPAddresses, net.ParseIP(ip))
	}
	for _, usage := range list("usages") {
		switch usage {
		case "digital signature":
			template.KeyUsage |= x509.KeyUsageDigitalSignature
		case "key encipherment":
			template.KeyUsage |= x509.KeyUsageKeyEncipherment
		case "client auth":
			template.ExtKeyUsage = append(template.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
		case "server auth":
			template.ExtKeyUsage = append(template.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		default:
			t.Fatalf("usage %q", usage)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, template, chain[0], key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	var tlsCrt bytes.Buffer
	_ = pem.Encode(&tlsCrt, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	top := chain[len(chain)-1]
	for _, ca := range chain {
		if !bytes.Equal(ca.RawSubject, ca.RawIssuer) {
			_ = pem.Encode(&tlsCrt, &pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})
		}
	}
	caCrt := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: top.Raw}))
	if c.caCrt != "" {
		caCrt = c.caCrt
	}
	name := spec["secretName"].(string)
	encode := func(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
	c.secrets[ns+"/"+name] = &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1",
		"kind":       "Secret",
		"type":       "kubernetes.io/tls",
		"metadata":   map[string]any{"name": name, "namespace": ns},
		"data": map[string]any{
			"tls.crt": encode(tlsCrt.Bytes()),
			"tls.key": encode(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})),
			"ca.crt":  encode([]byte(caCrt)),
		},
	}}
}

// Add is a cluster's objects with the Secrets written for its Certificates.
func (c *certManager) Add(objects []*unstructured.Unstructured) []*unstructured.Unstructured {
	out := append([]*unstructured.Unstructured{}, objects...)
	for _, certificate := range OfKind(objects, "Certificate") {
		name, _, _ := unstructured.NestedString(certificate.Object, "spec", "secretName")
		if secret, ok := c.secrets[certificate.GetNamespace()+"/"+name]; ok {
			out = append(out, secret.DeepCopy())
		}
	}
	return out
}

// Leaf is the certificate and key cert-manager wrote to a Secret.
func (c *certManager) Leaf(ns, name string) Keypair {
	c.t.Helper()
	secret, ok := c.secrets[ns+"/"+name]
	if !ok {
		c.t.Fatalf("no Secret %s/%s issued", ns, name)
	}
	return Keypair{Cert: string(secretBytes(c.t, secret, "tls.crt")), Key: string(secretBytes(c.t, secret, "tls.key"))}
}

// servedSerial is the serial of the certificate a gateway serves for host.
func servedSerial(t *testing.T, addr, host string, client Keypair) string {
	t.Helper()
	pair, err := gotls.X509KeyPair([]byte(client.Cert), []byte(client.Key))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := gotls.Dial("tcp", addr, &gotls.Config{ServerName: host, InsecureSkipVerify: true, Certificates: []gotls.Certificate{pair}})
	if err != nil {
		t.Fatalf("TLS to %s: %v", addr, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Text(16)
}

func leafSerial(t *testing.T, pemText string) string {
	t.Helper()
	block, _ := pem.Decode([]byte(pemText))
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert.SerialNumber.Text(16)
}

func TestCertManagerIssuesAndRenews(t *testing.T) {
	pin := CurrentPin(t)
	url := serveModule(t)
	variants := []struct {
		name  string
		flags []string
		// foreignCA: the issuer's ca.crt is a CA unrelated to the agreed root.
		foreignCA bool
	}{
		{"the agreed root's CA Issuer, mounted files", nil, false},
		{"an issuing CA, credentialName, an issuer whose ca.crt is not the agreed root", []string{"--intermediate", "partner-issuing", "--client-cert-mode", "credentialName"}, true},
	}
	for _, variant := range variants {
		t.Run(variant.name, func(t *testing.T) {
			out := genServed(t, pin, url, append([]string{"--certificates", "cert-manager"}, variant.flags...)...)
			cm := &certManager{t: t, secrets: map[string]*unstructured.Unstructured{}}
			if variant.foreignCA {
				cm.caCrt = NewCA(t, "some-vault-intermediate").Cert
			}
			for _, cluster := range []string{"cluster-a", "cluster-b"} {
				objects := out.Objects(t, cluster)
				for _, obj := range objects {
					if obj.GetKind() == "Secret" && (strings.HasSuffix(obj.GetName(), "-cert")) {
						t.Fatalf("%s has Secret %s: with cert-manager no leaf Secret is emitted", cluster, obj.GetName())
					}
				}
				cm.Reconcile(objects)
			}
			m := StartTwoMeshes(t, pin, out, WithObjects(cm.Add))
			if status, body := m.Hello(t); status != http.StatusOK {
				t.Fatalf("the client cert-manager issued got %d %q\n%s", status, body, m.Gateway.Log())
			}
			client := cm.Leaf("client", "cluster-a-client-cert")
			server := cm.Leaf(m.ours.GetNamespace(), "cluster-b-server-cert")
			if got := servedSerial(t, m.Gateway.Address(m.GatewayPort), m.Domain, client); got != leafSerial(t, server.Cert) {
				t.Fatalf("the gateway serves %s, not the certificate cert-manager issued", got)
			}
			fresh := m.StartSidecar(t, withConnectionPool(t, m.ClusterAObjects(t), map[string]any{"http": map[string]any{"maxRequestsPerConnection": int64(1)}}))
			loads := []*load{
				startLoad("keep-alive", m.Sidecar.Address(80), m.Domain),
				startLoad("new connection per request", fresh.Address(80), m.Domain),
			}
			for _, l := range loads {
				l.waitMore(t, 20)
			}

			// The renewal: cert-manager writes new keys and certificates to the same Secrets;
			// nothing is generated or applied by peergate.
			for _, cluster := range []string{"cluster-a", "cluster-b"} {
				cm.Reconcile(out.Objects(t, cluster))
			}
			secrets, extensions := m.ApplyClusterB(t, out)
			if secrets == 0 || extensions != 0 {
				t.Fatalf("the renewal changed %d secrets and %d extension configs of the gateway, want some and none (the WasmPlugin is untouched)", secrets, extensions)
			}
			for _, sidecar := range []*Envoy{m.Sidecar, fresh} {
				objects := m.ClusterAObjects(t)
				if sidecar == fresh {
					objects = withConnectionPool(t, objects, map[string]any{"http": map[string]any{"maxRequestsPerConnection": int64(1)}})
				}
				if secrets, _ := m.ApplyClusterA(t, sidecar, objects); secrets == 0 {
					t.Fatal("the renewal changed no secret of a sidecar")
				}
			}
			for _, l := range loads {
				l.waitMore(t, 50)
			}
			finishLoads(t, loads, "across the renewal", m.Gateway)
			renewedClient := cm.Leaf("client", "cluster-a-client-cert")
			renewedServer := cm.Leaf(m.ours.GetNamespace(), "cluster-b-server-cert")
			if renewedClient.Key == client.Key || renewedServer.Key == server.Key {
				t.Fatal("a renewal kept a key")
			}
			if got := servedSerial(t, m.Gateway.Address(m.GatewayPort), m.Domain, renewedClient); got != leafSerial(t, renewedServer.Cert) {
				t.Fatalf("after the renewal the gateway serves %s, not the renewed certificate", got)
			}
			if result := m.GatewayTLS(t, &renewedClient); result.Status != http.StatusOK {
				t.Fatalf("the renewed client straight to the gateway: %s\n%s", result, m.Gateway.Log())
			}
			if got := m.Gateway.Counter("wasmcustom.peergate.denied"); got != 0 {
				t.Errorf("denied = %d", got)
			}
		})
	}
}
