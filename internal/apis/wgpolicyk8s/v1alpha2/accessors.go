package v1alpha2

// GetPolicy returns the policy name, "" if missing.
func (r *PolicyReportResult) GetPolicy() string { return deref(r.Policy) }

// GetResult returns the result, "" if missing.
func (r *PolicyReportResult) GetResult() PolicyResult { return deref(r.Result) }

// GetSeverity returns the severity, "" if missing.
func (r *PolicyReportResult) GetSeverity() PolicySeverity { return deref(r.Severity) }

func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}
