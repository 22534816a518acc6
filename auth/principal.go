package auth

import "time"

// Kind tells what a request authenticated as.
type Kind uint8

const (
	// Anonymous is a request without a credential.
	Anonymous Kind = iota
	// User is a request with a verified token; Name is its subject.
	User
	// Service is a request with a static publish key; Name is the key's name.
	// A publish key is a back-end credential: it may publish and subscribe to
	// every topic.
	Service
)

func (k Kind) String() string {
	switch k {
	case User:
		return "user"
	case Service:
		return "service"
	}
	return "anonymous"
}

// Principal is who a request acts as and what it may do.
type Principal struct {
	Kind Kind
	// Name is the token's subject or the publish key's name; empty when
	// anonymous.
	Name string
	// Expires is when the token stops being accepted (exp plus the leeway);
	// zero for keys and anonymous requests.
	Expires time.Time

	subscribe, publish []Pattern
	everything         bool
}

// ID names the credential, e.g. "user:42" or "key:billing", for limits and
// logs; "anonymous" for anonymous requests.
func (p *Principal) ID() string {
	if p.Kind == Anonymous {
		return "anonymous"
	}
	return p.Kind.String() + ":" + p.Name
}

// CanSubscribe reports whether p may read topic. Private topics (users/**)
// and Herald's own (herald/**) need a pattern that names them; users/{sub} is
// always the subject's own.
func (p *Principal) CanSubscribe(topic string) bool {
	if p.everything {
		return true
	}
	if p.Kind == User && topic == UserTopic(p.Name) {
		return true
	}
	return grants(p.subscribe, topic)
}

// CanPublish reports whether p may publish to topic. Anonymous requests never
// may: they hold no publish patterns.
func (p *Principal) CanPublish(topic string) bool {
	if p.everything {
		return true
	}
	return grants(p.publish, topic)
}

// grants reports whether a pattern matches topic. A private or an admin topic
// is granted only by a pattern whose first segment names its prefix: users/**
// and herald/** are never reached by wildcards alone (*, **, */stats).
func grants(patterns []Pattern, topic string) bool {
	private, admin := IsPrivate(topic), IsAdmin(topic)
	for _, pat := range patterns {
		if private && !pat.NamesPrivate() || admin && !pat.NamesAdmin() {
			continue
		}
		if pat.Match(topic) {
			return true
		}
	}
	return false
}

// AnonymousPrincipal is an anonymous client that may subscribe to the topics of
// patterns (never private ones unless a pattern names users/, which Guard
// refuses for anonymous access).
func AnonymousPrincipal(subscribe []Pattern) *Principal {
	return &Principal{Kind: Anonymous, subscribe: subscribe}
}

// ServicePrincipal is a back end holding the publish key called name.
func ServicePrincipal(name string) *Principal {
	return &Principal{Kind: Service, Name: name, everything: true}
}

// UserPrincipal is a verified token's subject with its granted patterns, whose
// {sub} is expanded to subject. Patterns whose {sub} cannot be expanded are
// dropped: they grant nothing.
func UserPrincipal(subject string, subscribe, publish []Pattern, expires time.Time) *Principal {
	expand := func(ps []Pattern) []Pattern {
		out := make([]Pattern, 0, len(ps))
		for _, p := range ps {
			if q, ok := p.Expand(subject); ok {
				out = append(out, q)
			}
		}
		return out
	}
	return &Principal{Kind: User, Name: subject, Expires: expires, subscribe: expand(subscribe), publish: expand(publish)}
}
