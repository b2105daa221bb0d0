package analytics

// SetHook makes s call hook(component) whenever the projector or the refresher, holding its
// leader lock, is about to write. Set it before Run.
func SetHook(s *Service, hook func(component string)) { s.hook = hook }
