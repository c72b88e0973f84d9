/* c-merge: the C twin of plugins/echo. A request handler that returns its request unchanged and
 * a merge that joins the parts that arrived with newlines, prefixed with "missing=N\n" when some
 * parts are missing. */
#include <stdio.h>
#include <string.h>

#include "wasmpod.h"

static int32_t echo(wasmpod_bytes in, wasmpod_bytes *out) {
	*out = in; /* the output may alias the input */
	return 0;
}

static int32_t join(wasmpod_parts *parts, wasmpod_bytes *out) {
	char prefix[32];
	int plen = 0;
	if (parts->missing > 0) {
		plen = snprintf(prefix, sizeof prefix, "missing=%u\n", (unsigned)parts->missing);
	}
	/* first pass: the output size */
	wasmpod_parts it = *parts;
	wasmpod_part part;
	uint64_t size = (uint64_t)plen;
	uint32_t present = 0;
	while (wasmpod_parts_next(&it, &part)) {
		if (part.present) {
			size += part.data.len + (present > 0 ? 1 : 0);
			present++;
		}
	}
	if (size > UINT32_MAX) {
		return wasmpod_failf(1, "merged output too large (%llu bytes)", (unsigned long long)size);
	}
	uint8_t *buf = wasmpod_output((uint32_t)size);
	if (buf == NULL) {
		return wasmpod_failf(1, "out of memory for %llu bytes", (unsigned long long)size);
	}
	/* second pass: copy */
	uint8_t *p = buf;
	memcpy(p, prefix, (size_t)plen);
	p += plen;
	present = 0;
	while (wasmpod_parts_next(parts, &part)) {
		if (!part.present) {
			continue;
		}
		if (present++ > 0) {
			*p++ = '\n';
		}
		memcpy(p, part.data.ptr, part.data.len);
		p += part.data.len;
	}
	out->ptr = buf;
	out->len = (uint32_t)size;
	return 0;
}

WASMPOD_HANDLE(echo)
WASMPOD_MERGE(join)
