package main

import (
	"github.com/heron-registry/heron/redirector/httpd"
	"github.com/spf13/pflag"
)

// addAuthFlags adds heron serve's flags of authentication and
// authorization (docs/access.md), which set c's fields of the same names.
func addAuthFlags(f *pflag.FlagSet, c *httpd.Config) {
	f.StringVar(&c.Htpasswd, "htpasswd", "", "authenticate users with this htpasswd file of bcrypt entries (htpasswd -B), reloaded when it changes")
	f.StringVar(&c.Access, "access", "", "who may pull, push and delete which repositories: a YAML access file (docs/access.md), reloaded when it changes; default: anonymous callers pull everything, users do everything")
	f.StringSliceVar(&c.TokenKeys, "token-key", nil, "issue and verify Docker tokens (the Bearer flow; token endpoint /token) with the Ed25519 keys of these PEM files: the first private key signs, every key verifies (rotation); repeatable")
	f.StringVar(&c.TokenRealm, "token-realm", "", "with --token-key: the token endpoint's absolute URL given to clients (default: this server's /token, as the request reached it)")
	f.StringVar(&c.TokenService, "token-service", "heron", "with --token-key: the service name of the tokens (their issuer and audience); servers that share keys must share it")
	f.DurationVar(&c.TokenExpiry, "token-expiry", 0, "with --token-key: how long an access token is valid (default 5m)")
	f.BoolVar(&c.DenyAnonymous, "deny-anonymous", false, "refuse anonymous callers everything, whatever the access file says")
}
