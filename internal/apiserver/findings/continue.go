package findings

import (
	"encoding/base64"
	"encoding/json"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// continueToken is where the next page starts: after the row with these key columns, in the order
// of the list query. It is opaque to clients (base64 of JSON).
//
// Pages are keyset pages over the current rows, not a snapshot: every page is read at the latest
// projection. A row is never returned twice and a row that exists throughout the listing is never
// missed; a result changed between two pages shows as it is when its page is read. There is no
// history to expire, so a token never expires either (no 410).
type continueToken struct {
	// Version lets a later format tell old tokens apart.
	Version int `json:"v"`
	// Findings: the last row's report namespace, storage key and result index.
	Namespace string `json:"ns,omitempty"`
	Key       string `json:"key,omitempty"`
	Index     int32  `json:"i,omitempty"`
	// Summaries: the last row's type and key columns.
	Type string   `json:"type,omitempty"`
	Keys []string `json:"keys,omitempty"`
}

const tokenVersion = 1

func (t continueToken) encode() string {
	t.Version = tokenVersion
	b, _ := json.Marshal(t) // plain strings and numbers: cannot fail
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeContinue reads a token; "" is the first page (nil).
func decodeContinue(s string) (*continueToken, error) {
	if s == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	var t continueToken
	if err == nil {
		err = json.Unmarshal(b, &t)
	}
	if err != nil || t.Version != tokenVersion {
		return nil, apierrors.NewBadRequest("invalid continue token: pass the metadata.continue of the previous page unchanged")
	}
	return &t, nil
}
