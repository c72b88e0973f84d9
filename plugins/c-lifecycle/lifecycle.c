/* c-lifecycle: exercises every lifecycle hook.
 *
 *   start     counts the instance's starts (the "starts" command reports them)
 *   health    from config key "health": ready (or no key) -> 0, notready -> 1, unhealthy -> 2;
 *             any other value -> 2
 *   tick      counts ticks (the "ticks" command reports them)
 *   snapshot  the counter as a little-endian uint64 (8 bytes)
 *   restore   loads that counter; any other length fails the start
 *   stop      logs "stop: counter=N grace_ms=G" at info level
 *
 * Request handler commands (surrounding ASCII whitespace ignored): "inc" increments the counter
 * and returns its new value in decimal, "state" returns the counter, "starts" and "ticks" their
 * counts, all in decimal. Anything else fails with code 2 and message "unknown command: ...". */
#include <stdio.h>
#include <string.h>

#include "wasmpod.h"

static uint64_t counter, starts, ticks;
static char text[24];

static int32_t on_start(void) {
	starts++;
	wasmpod_logf(WASMPOD_INFO, "start: starts=%llu", (unsigned long long)starts);
	return 0;
}

static int32_t on_health(void) {
	char v[16];
	int32_t n = wasmpod_config_get("health", v, sizeof v);
	if (n < 0) {
		return WASMPOD_HEALTHY;
	}
	if (n == 5 && memcmp(v, "ready", 5) == 0) {
		return WASMPOD_HEALTHY;
	}
	if (n == 8 && memcmp(v, "notready", 8) == 0) {
		return WASMPOD_NOT_READY;
	}
	return WASMPOD_UNHEALTHY;
}

static int32_t on_tick(int64_t now_unix_ms) {
	(void)now_unix_ms;
	ticks++;
	return 0;
}

static uint8_t state[8];

static int32_t on_snapshot(wasmpod_bytes *out) {
	for (int i = 0; i < 8; i++) {
		state[i] = (uint8_t)(counter >> (8 * i));
	}
	out->ptr = state;
	out->len = sizeof state;
	return 0;
}

static int32_t on_restore(wasmpod_bytes in) {
	if (in.len != 8) {
		return wasmpod_failf(1, "restore: want 8 bytes of state, got %u", (unsigned)in.len);
	}
	counter = 0;
	for (int i = 0; i < 8; i++) {
		counter |= (uint64_t)in.ptr[i] << (8 * i);
	}
	return 0;
}

static int32_t on_stop(int64_t grace_ms) {
	wasmpod_logf(WASMPOD_INFO, "stop: counter=%llu grace_ms=%lld", (unsigned long long)counter,
	             (long long)grace_ms);
	return 0;
}

static int is_space(uint8_t c) {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static int32_t decimal(uint64_t v, wasmpod_bytes *out) {
	int n = snprintf(text, sizeof text, "%llu", (unsigned long long)v);
	out->ptr = (const uint8_t *)text;
	out->len = (uint32_t)n;
	return 0;
}

static int32_t command(wasmpod_bytes in, wasmpod_bytes *out) {
	const uint8_t *p = in.ptr, *end = in.ptr + in.len;
	while (p < end && is_space(*p)) {
		p++;
	}
	while (end > p && is_space(end[-1])) {
		end--;
	}
	size_t n = (size_t)(end - p);
	if (n == 3 && memcmp(p, "inc", 3) == 0) {
		return decimal(++counter, out);
	}
	if (n == 5 && memcmp(p, "state", 5) == 0) {
		return decimal(counter, out);
	}
	if (n == 6 && memcmp(p, "starts", 6) == 0) {
		return decimal(starts, out);
	}
	if (n == 5 && memcmp(p, "ticks", 5) == 0) {
		return decimal(ticks, out);
	}
	return wasmpod_failf(2, "unknown command: %.*s", (int)(n > 64 ? 64 : n), (const char *)p);
}

WASMPOD_HANDLE(command)
WASMPOD_ON_START(on_start)
WASMPOD_ON_HEALTH(on_health)
WASMPOD_ON_TICK(on_tick)
WASMPOD_ON_SNAPSHOT(on_snapshot)
WASMPOD_ON_RESTORE(on_restore)
WASMPOD_ON_STOP(on_stop)
