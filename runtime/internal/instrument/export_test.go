package instrument

// The loop head check forms, for TestRetryLoopMatchesInline.
const (
	FormAuto   = formAuto
	FormInline = formInline
	FormRetry  = formRetry
)

// SetLoopForm selects the loop head checks of the next Instrument calls.
func SetLoopForm(f int) { loopForm = f }

// OuterLoops is outerLoops.
var OuterLoops = outerLoops

// SetBackEdges selects the back edge checks (true) or the head checks (false) of the next
// Instrument calls' retry loops.
func SetBackEdges(on bool) { backEdges = on }

// TableLoops is tableLoops.
var TableLoops = tableLoops
