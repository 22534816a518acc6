package auth

import (
	"errors"
	"fmt"

	"github.com/golang-jwt/jwt/v5"
)

// Reason is the code of a refused token, answered to the client in
// {"error":{"code": reason}} with status 401.
type Reason string

const (
	ReasonMalformed       Reason = "token_malformed"         // not three base64url parts of JSON
	ReasonAlgNotAllowed   Reason = "token_alg_not_allowed"   // alg none, or an alg no configured key uses
	ReasonUnknownKid      Reason = "token_unknown_kid"       // kid not among the keys, even after a refresh
	ReasonBadSignature    Reason = "token_signature_invalid" // the signature does not verify
	ReasonExpired         Reason = "token_expired"           // exp passed (beyond the leeway)
	ReasonNotYetValid     Reason = "token_not_yet_valid"     // nbf ahead (beyond the leeway)
	ReasonIssuedInFuture  Reason = "token_issued_in_future"  // iat ahead (beyond the leeway)
	ReasonBadAudience     Reason = "token_audience_invalid"  // aud does not hold the configured audience
	ReasonBadIssuer       Reason = "token_issuer_invalid"    // iss is not the configured issuer
	ReasonBadClaims       Reason = "token_claims_invalid"    // no exp or sub, or a herald pattern that does not parse
	ReasonNotAccepted     Reason = "tokens_not_accepted"     // no JWT key configured: tokens cannot be verified
	ReasonKeysUnavailable Reason = "token_keys_unavailable"  // the JWKS could not be fetched yet
)

// Error is a refused token: a reason code and a message for humans.
type Error struct {
	Reason Reason
	Err    error
}

func (e *Error) Error() string { return string(e.Reason) + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

func refuse(r Reason, format string, args ...any) *Error {
	return &Error{Reason: r, Err: fmt.Errorf(format, args...)}
}

// Errors of our key lookup, returned through jwt's keyfunc.
var (
	errAlgNotAllowed   = errors.New("signing algorithm not allowed")
	errUnknownKid      = errors.New("no key with this kid")
	errKeysUnavailable = errors.New("signing keys not fetched yet")
	errBadClaims       = errors.New("invalid herald claims")
)

// classify maps an error of jwt.ParseWithClaims to a reason.
func classify(err error) *Error {
	var ours *Error
	switch {
	case errors.As(err, &ours):
		return ours
	case errors.Is(err, errAlgNotAllowed):
		return &Error{ReasonAlgNotAllowed, errAlgNotAllowed}
	case errors.Is(err, errUnknownKid):
		return &Error{ReasonUnknownKid, errUnknownKid}
	case errors.Is(err, errKeysUnavailable):
		return &Error{ReasonKeysUnavailable, errKeysUnavailable}
	case errors.Is(err, jwt.ErrTokenMalformed):
		return &Error{ReasonMalformed, errors.New("token is malformed")}
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		// Our keyfunc's errors are matched above; what is left is an alg the
		// library does not know.
		return &Error{ReasonAlgNotAllowed, errAlgNotAllowed}
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return &Error{ReasonBadSignature, errors.New("signature does not verify")}
	case errors.Is(err, jwt.ErrTokenExpired):
		return &Error{ReasonExpired, errors.New("token has expired")}
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return &Error{ReasonNotYetValid, errors.New("token is not valid yet (nbf)")}
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return &Error{ReasonIssuedInFuture, errors.New("token is issued in the future (iat)")}
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return &Error{ReasonBadAudience, errors.New("token audience is not accepted")}
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return &Error{ReasonBadIssuer, errors.New("token issuer is not accepted")}
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return &Error{ReasonBadClaims, errors.New("token lacks a required claim (exp)")}
	}
	return &Error{ReasonBadClaims, errors.New("token claims are invalid")}
}
