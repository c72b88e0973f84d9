/* longerr fails every call with a message longer than the host keeps, made of multi-byte
 * characters (TestLongErrorMessage): through wasmpod_failf when the input is "f", else
 * wasmpod_fail. */
#include <string.h>

#include "wasmpod.h"

static char msg[2 + 3 * 2000];

static int32_t handle(wasmpod_bytes in, wasmpod_bytes *out) {
	(void)out;
	memcpy(msg, "xy", 2);
	for (int i = 0; i < 2000; i++) {
		memcpy(msg + 2 + 3 * i, "\xe2\x82\xac", 3);
	}
	if (in.len == 1 && in.ptr[0] == 'f') {
		return wasmpod_failf(1, "%.*s", (int)sizeof msg, msg);
	}
	return wasmpod_fail(1, msg, sizeof msg);
}
WASMPOD_HANDLE(handle)
