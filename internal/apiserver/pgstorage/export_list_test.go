package pgstorage

// SetRemainingCountLimit changes how many objects s's list pages count for remainingItemCount.
// Call it before s serves lists (the store's fields are not guarded).
func (s *Store) SetRemainingCountLimit(n int64) { s.remainingCountLimit = n }
