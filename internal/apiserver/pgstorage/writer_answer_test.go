package pgstorage

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// TestAnswerAfterLeaving checks what a caller that stopped waiting for its batch answers when the
// batch answered meanwhile: the batch's outcome, unless that is the batch's cancellation (which
// the last caller leaving causes), which is no outcome: then, as when nothing came, the write may
// have been stored (errAnswerLate, a 503), never the cancellation (a 500).
func TestAnswerAfterLeaving(t *testing.T) {
	conflict := errors.New("the key exists")
	for _, tc := range []struct {
		name     string
		answered *writeResult
		rev      int64
		late     bool
		err      error
	}{
		{name: "nothing yet", late: true},
		{name: "committed", answered: &writeResult{rev: 7}, rev: 7},
		{name: "refused", answered: &writeResult{err: conflict}, err: conflict},
		{name: "cancelled by the leaving", answered: &writeResult{err: fmt.Errorf("begin batch: %w", context.Canceled)}, late: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op := &writeOp{done: make(chan writeResult, 1)}
			if tc.answered != nil {
				op.done <- *tc.answered
			}
			rev, err := answerAfterLeaving(op, context.DeadlineExceeded)
			switch {
			case tc.late:
				if !errors.Is(err, errAnswerLate) || !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
					t.Fatalf("error %v, want errAnswerLate with the caller's deadline", err)
				}
			case rev != tc.rev || !errors.Is(err, tc.err) || (tc.err == nil && err != nil):
				t.Fatalf("%d, %v; want %d, %v", rev, err, tc.rev, tc.err)
			}
		})
	}
}
