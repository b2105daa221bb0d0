package pgstorage

// SetRemainingCountLimit changes how many objects a list page counts for remainingItemCount
// until the returned function restores it. Not safe while lists run.
func SetRemainingCountLimit(n int64) (restore func()) {
	old := remainingCountLimit
	remainingCountLimit = n
	return func() { remainingCountLimit = old }
}
