module peergate.test/x509oracle

go 1.26
