package runtime

// RuntimeClosed reports whether the engine has closed its wazero runtime (which frees what the
// instances of every module use).
func RuntimeClosed(e *Engine) bool { return e.rtClosing.Load() }
