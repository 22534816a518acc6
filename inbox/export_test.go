package inbox

// WithAfterSend sets the hook that runs after a relayed batch reached the
// inbox and before its rows are deleted.
func WithAfterSend(o RelayOptions, f func() error) RelayOptions {
	o.afterSend = f
	return o
}
