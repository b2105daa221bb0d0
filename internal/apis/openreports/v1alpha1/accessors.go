package v1alpha1

// GetPolicy returns the policy name, "" if missing.
func (r *ReportResult) GetPolicy() string { return deref(r.Policy) }

// GetResult returns the result, "" if missing.
func (r *ReportResult) GetResult() Result { return deref(r.Result) }

// GetSeverity returns the severity, "" if missing.
func (r *ReportResult) GetSeverity() ResultSeverity { return deref(r.Severity) }

func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}
