package x509oracle

// DirectoryString (RFC 5280 4.1.2.4) and IA5String: encoding for the generator, decoding for
// the oracle. Both sides are written from X.680 and RFC 5280, not from peergate.

import (
	"errors"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

var errUndecodable = errors.New("undecodable string value")

// encodeString returns the content octets of s in the string type tag. TeletexString is
// written as Latin-1 (the reading most implementations, Go and BoringSSL among them, give it);
// the generator only hands it runes below U+0100.
func encodeString(tag byte, s string) []byte {
	switch tag {
	case tagBMP:
		var out []byte
		for _, u := range utf16.Encode([]rune(s)) {
			out = append(out, byte(u>>8), byte(u))
		}
		return out
	case tagUniversal:
		var out []byte
		for _, r := range s {
			out = append(out, byte(r>>24), byte(r>>16), byte(r>>8), byte(r))
		}
		return out
	case tagTeletex:
		var out []byte
		for _, r := range s {
			out = append(out, byte(r))
		}
		return out
	}
	return []byte(s)
}

// decodeString reads the content octets of a string type to UTF-8, refusing what the type does
// not allow: invalid UTF-8, PrintableString or IA5String characters outside their sets, a BMP
// or Universal string of the wrong length or with surrogates.
func decodeString(tag byte, b []byte) (string, error) {
	switch tag {
	case tagUTF8:
		if !utf8.Valid(b) {
			return "", errUndecodable
		}
		return string(b), nil
	case tagPrintable:
		for _, c := range b {
			if !isPrintableChar(c) {
				return "", errUndecodable
			}
		}
		return string(b), nil
	case tagIA5:
		for _, c := range b {
			if c >= 0x80 {
				return "", errUndecodable
			}
		}
		return string(b), nil
	case tagTeletex:
		runes := make([]rune, len(b))
		for i, c := range b {
			runes[i] = rune(c)
		}
		return string(runes), nil
	case tagBMP:
		return decodeWide(b, 2)
	case tagUniversal:
		return decodeWide(b, 4)
	}
	return "", errUndecodable
}

// decodeWide reads UCS-2 (width 2) or UCS-4 (width 4), big-endian.
func decodeWide(b []byte, width int) (string, error) {
	if len(b)%width != 0 {
		return "", errUndecodable
	}
	var sb strings.Builder
	for i := 0; i < len(b); i += width {
		var r rune
		for _, c := range b[i : i+width] {
			r = r<<8 | rune(c)
		}
		if r > utf8.MaxRune || (r >= 0xd800 && r <= 0xdfff) {
			return "", errUndecodable
		}
		sb.WriteRune(r)
	}
	return sb.String(), nil
}

// isPrintableChar is X.680's PrintableString set.
func isPrintableChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte(" '()+,-./:=?", c) >= 0
}

func isStringTag(tag byte) bool {
	switch tag {
	case tagUTF8, tagPrintable, tagTeletex, tagIA5, tagBMP, tagUniversal:
		return true
	}
	return false
}
