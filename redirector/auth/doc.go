// Package auth authenticates the callers of heron serve and decides what
// each one may do with each repository.
//
// A caller is identified in one of four ways (Authenticate):
//
//   - HTTP basic credentials checked against an htpasswd file of bcrypt
//     hashes (htpasswd.go). A verified (user, password, hash) triple is
//     remembered for a while so that a pull does not pay bcrypt's cost
//     every time; a changed password is a different key and misses.
//   - A bearer token of the Docker token flow
//     (https://distribution.github.io/distribution/spec/auth/token/): a JWT
//     signed with an Ed25519 key that every server sharing the key checks
//     offline (token.go). The token endpoint (TokenHandler, tokenhandler.go)
//     is served by heron itself: it takes basic credentials, or a refresh
//     token, and grants the requested scopes that the access file allows.
//   - A client certificate verified by the TLS layer: the leaf's common
//     name is the user.
//   - Nobody: the anonymous caller.
//
// What a caller may do is the access file's answer (access.go): rules that
// map repository name patterns to the actions (pull, push, delete) of
// anonymous callers, of any authenticated caller, of groups and of users.
// Without an access file anonymous callers may pull everything and
// authenticated ones may do everything. A token's rights are the scopes it
// carries, and still only those the access file allows its subject now, so
// that removing a right takes effect at once.
//
// The htpasswd file, the access file and the key files are reloaded when
// they change (watch.go); a file that does not load keeps the previous
// configuration in force and the error is logged.
//
// The package knows nothing of the server: package redirector asks it who
// the caller is, whether an action is allowed, and to write the challenge.
package auth
