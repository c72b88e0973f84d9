/* c-leaf: the C twin of plugins/benchleaf. A request handler that does nothing (the cost of one
 * call) and a leaf that sums its input bytes into a little-endian uint64. */
#include "wasmpod.h"

static uint8_t sum_out[8];

static int32_t noop(wasmpod_bytes in, wasmpod_bytes *out) {
	(void)in;
	(void)out; /* empty output */
	return 0;
}

static int32_t sum(wasmpod_bytes in, wasmpod_bytes *out) {
	uint64_t s = 0;
	for (uint32_t i = 0; i < in.len; i++) {
		s += in.ptr[i];
	}
	for (int i = 0; i < 8; i++) {
		sum_out[i] = (uint8_t)(s >> (8 * i));
	}
	out->ptr = sum_out;
	out->len = sizeof sum_out;
	return 0;
}

WASMPOD_HANDLE(noop)
WASMPOD_LEAF(sum)
