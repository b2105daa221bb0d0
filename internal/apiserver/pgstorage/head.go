package pgstorage

import "context"

// headOnlyKey marks a request whose response carries only each object's metadata
// (PartialObjectMetadata) or a Table (metadata plus the printer columns, which read scope and
// summary, never results).
type headOnlyKey struct{}

// WithHeadOnly marks ctx's request as one whose response needs no report results: its lists and
// watch-list initial events then read reports_head (the object without results) instead of the
// whole object. The API server's handler chain sets it after negotiating the response's media
// type exactly as the handlers do, so the objects it returns are always converted to metadata
// or a Table, and never reach a client as they are read.
func WithHeadOnly(ctx context.Context) context.Context {
	return context.WithValue(ctx, headOnlyKey{}, true)
}

// headOnly reports whether WithHeadOnly marked ctx.
func headOnly(ctx context.Context) bool {
	v, _ := ctx.Value(headOnlyKey{}).(bool)
	return v
}
