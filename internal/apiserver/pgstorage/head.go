package pgstorage

import "context"

// readShape is how much of each report a read returns (the SQL reads' shape parameter).
type readShape int32

const (
	readObject   readShape = iota // the whole object
	readHead                      // reports_head: the object without its results
	readMetadata                  // apiVersion, kind and metadata alone
	// readRevision reads keys and revisions alone: a full read whose objects come from the
	// object cache, or from a second read by key (objectcache.go). Never a request's shape.
	readRevision
)

// shapeKey marks a request whose response carries only part of each object.
type shapeKey struct{}

// WithHeadOnly marks ctx's request as one whose response needs no report results (a Table:
// metadata plus the printer columns, which read scope and summary, never results): its lists and
// watch-list initial events then read reports_head (the object without results) instead of the
// whole object. The API server's handler chain sets it after negotiating the response's media
// type exactly as the handlers do, so the objects it returns are always converted, and never
// reach a client as they are read.
func WithHeadOnly(ctx context.Context) context.Context {
	return context.WithValue(ctx, shapeKey{}, readHead)
}

// WithMetadataOnly marks ctx's request as one whose response carries each object's metadata
// alone (PartialObjectMetadata, what Kyverno's and Policy Reporter's informers ask for): its
// lists and watch-list initial events read only the objects' metadata, when SQL does all the
// selecting (a field selector evaluated in Go needs the head). Set like WithHeadOnly.
func WithMetadataOnly(ctx context.Context) context.Context {
	return context.WithValue(ctx, shapeKey{}, readMetadata)
}

// shapeFor is the shape of the reads of ctx's request: a metadata-only read needs the head
// instead when Go must finish the selecting (complete is false).
func shapeFor(ctx context.Context, complete bool) readShape {
	shape, _ := ctx.Value(shapeKey{}).(readShape)
	if shape == readMetadata && !complete {
		return readHead
	}
	return shape
}
