package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// keySet is the parsed token key files: the first private key signs, and
// every key (the public halves of the private ones included) verifies.
type keySet struct {
	signer    ed25519.PrivateKey // nil: this server only verifies
	signerKID string
	verify    map[string]ed25519.PublicKey // kid -> key
}

// keyHelp says how to make a key file; it ends the errors about them.
const keyHelp = "create a signing key with: openssl genpkey -algorithm ed25519 -out FILE (and its public half for verify-only servers with: openssl pkey -in FILE -pubout)"

// parseKeyFile reads one PEM file: a PKCS#8 Ed25519 private key or a PKIX
// Ed25519 public key.
func parseKeyFile(file string, data []byte) (priv ed25519.PrivateKey, pub ed25519.PublicKey, err error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, nil, fmt.Errorf("token key file %s: no PEM block; %s", file, keyHelp)
	}
	switch block.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("token key file %s: %v; %s", file, err, keyHelp)
		}
		p, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, nil, fmt.Errorf("token key file %s: a %T, not an Ed25519 key; %s", file, k, keyHelp)
		}
		return p, p.Public().(ed25519.PublicKey), nil
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("token key file %s: %v; %s", file, err, keyHelp)
		}
		p, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, nil, fmt.Errorf("token key file %s: a %T, not an Ed25519 key; %s", file, k, keyHelp)
		}
		return nil, p, nil
	default:
		return nil, nil, fmt.Errorf("token key file %s: a PEM %q block, expected PRIVATE KEY (PKCS#8) or PUBLIC KEY; %s", file, block.Type, keyHelp)
	}
}

func parseKeys(files []string, data [][]byte) (*keySet, error) {
	ks := &keySet{verify: map[string]ed25519.PublicKey{}}
	for i, f := range files {
		priv, pub, err := parseKeyFile(f, data[i])
		if err != nil {
			return nil, err
		}
		kid := KeyID(pub)
		ks.verify[kid] = pub
		if priv != nil && ks.signer == nil {
			ks.signer, ks.signerKID = priv, kid
		}
	}
	return ks, nil
}

// KeyID is the stable id of a public key, written as the kid of the tokens
// it signs: the RFC 7638 JWK thumbprint (base64url SHA-256 of the key's
// canonical JWK).
func KeyID(pub ed25519.PublicKey) string {
	jwk := `{"crv":"Ed25519","kty":"OKP","x":"` + base64.RawURLEncoding.EncodeToString(pub) + `"}`
	sum := sha256.Sum256([]byte(jwk))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// accessEntry is one element of a token's access claim, as the Docker
// token spec defines it.
type accessEntry struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// tokenClaims are the claims of heron's tokens. An access token has the
// audience Service and no Use; a refresh token has the audience
// Service+refreshAudienceSuffix and Use "refresh", so neither passes for
// the other.
type tokenClaims struct {
	jwt.RegisteredClaims
	Access []accessEntry `json:"access"`
	Use    string        `json:"heron_use,omitempty"`
	// PasswordTag ties a refresh token to the user's password hash as it
	// was when the token was issued: changing the password revokes it.
	PasswordTag string `json:"heron_pwtag,omitempty"`
}

const (
	useRefresh            = "refresh"
	refreshAudienceSuffix = "#refresh"
)

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// sign signs claims with the signing key.
func (ks *keySet) sign(c *tokenClaims) (string, error) {
	if ks == nil || ks.signer == nil {
		return "", errors.New("no signing key")
	}
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
	t.Header["kid"] = ks.signerKID
	return t.SignedString(ks.signer)
}

// errTokenUse is returned for a token of the wrong kind.
var errTokenUse = errors.New("wrong kind of token")

// parse verifies a token's signature with any of the keys and its
// registered claims (issuer, audience, times) and returns its claims.
func (ks *keySet) parse(raw, issuer, audience, use string, now func() time.Time) (*tokenClaims, string, error) {
	if ks == nil || len(ks.verify) == 0 {
		return nil, "", errors.New("no token keys")
	}
	var c tokenClaims
	var kid string
	_, err := jwt.ParseWithClaims(raw, &c, func(t *jwt.Token) (any, error) {
		kid, _ = t.Header["kid"].(string)
		k, ok := ks.verify[kid]
		if !ok {
			return nil, fmt.Errorf("unknown key id %q", kid)
		}
		return k, nil
	},
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithIssuer(issuer),
		jwt.WithAudience(audience),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(now),
		jwt.WithLeeway(tokenLeeway),
	)
	if err != nil {
		return nil, "", err
	}
	if c.Use != use {
		return nil, "", errTokenUse
	}
	return &c, kid, nil
}

// tokenLeeway tolerates clocks of servers sharing a key that differ a little.
const tokenLeeway = 10 * time.Second

// passwordTag is a short digest of a stored password hash.
func passwordTag(hash []byte) string {
	sum := sha256.Sum256(hash)
	return base64.RawURLEncoding.EncodeToString(sum[:12])
}

// Scope is one scope of the token flow: a resource type, a name and
// actions, written TYPE:NAME:ACTION,ACTION.
type Scope struct {
	Type    string // "repository" or "registry"
	Name    string
	Actions []string
}

// RepositoryScope is the scope repository:REPO:ACTS.
func RepositoryScope(repo string, acts ...Action) Scope {
	s := Scope{Type: "repository", Name: repo}
	for _, a := range acts {
		s.Actions = append(s.Actions, string(a))
	}
	return s
}

// CatalogScope is the scope of GET /v2/_catalog, registry:catalog:*.
var CatalogScope = Scope{Type: "registry", Name: "catalog", Actions: []string{"*"}}

func (s Scope) String() string {
	return s.Type + ":" + s.Name + ":" + strings.Join(s.Actions, ",")
}

// parseScope parses TYPE[(CLASS)]:NAME:ACTIONS. The name may itself hold
// colons (a host:port), so the type ends at the first colon and the
// actions start after the last.
func parseScope(s string) (Scope, bool) {
	typ, rest, ok := strings.Cut(s, ":")
	if !ok {
		return Scope{}, false
	}
	i := strings.LastIndexByte(rest, ':')
	if i < 0 {
		return Scope{}, false
	}
	name, acts := rest[:i], rest[i+1:]
	if j := strings.IndexByte(typ, '('); j >= 0 && strings.HasSuffix(typ, ")") {
		typ = typ[:j]
	}
	sc := Scope{Type: typ, Name: name}
	for _, a := range strings.Split(acts, ",") {
		if a = strings.TrimSpace(a); a != "" {
			sc.Actions = append(sc.Actions, a)
		}
	}
	return sc, name != ""
}
