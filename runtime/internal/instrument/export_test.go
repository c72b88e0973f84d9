package instrument

// SetRetryMode is for the A/B.
func SetRetryMode(m int) { retryMode = m }
