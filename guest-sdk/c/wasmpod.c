/*
 * wasmpod.c - C SDK for the wasmpod native guest ABI v1. See wasmpod.h and ../ABI.md.
 */
#include "wasmpod.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Host imports (module "wasmpod"); only those the plugin reaches are linked in ------- */

#define WASMPOD_IMPORT_(name) __attribute__((import_module("wasmpod"), import_name(name)))

WASMPOD_IMPORT_("log") void wasmpod_host_log_(int32_t level, const char *ptr, int32_t len);
WASMPOD_IMPORT_("error") void wasmpod_host_error_(const char *ptr, int32_t len);
WASMPOD_IMPORT_("config_get")
int32_t wasmpod_host_config_get_(const char *key, int32_t key_len, char *buf, int32_t buf_cap);
WASMPOD_IMPORT_("metric_define")
int32_t wasmpod_host_metric_define_(int32_t kind, const char *name, int32_t name_len,
                                    const char *help, int32_t help_len);
WASMPOD_IMPORT_("metric_record") void wasmpod_host_metric_record_(int32_t id, double value);
WASMPOD_IMPORT_("scale") int32_t wasmpod_host_scale_(int32_t delta);

/* The host keeps at most 4 KiB of an error message; log lines get the same bound here. */
#define WASMPOD_MSG_MAX_ 4096

/* Internal messages are built without printf so that plugins which never format text stay
 * small: msg_cat_ appends a string, msg_u32_ a decimal number. */
typedef struct wasmpod_msg_ {
	char b[160];
	size_t n;
} wasmpod_msg_;

static void wasmpod_msg_cat_(wasmpod_msg_ *m, const char *s) {
	while (*s != '\0' && m->n < sizeof m->b) {
		m->b[m->n++] = *s++;
	}
}

static void wasmpod_msg_u32_(wasmpod_msg_ *m, uint32_t v) {
	char d[10];
	int i = 0;
	do {
		d[i++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	while (i > 0 && m->n < sizeof m->b) {
		m->b[m->n++] = d[--i];
	}
}

/* ---- Buffer ------------------------------------------------------------------------------ */

#define WASMPOD_BUFFER_ROUND_ 65536u

static uint8_t *wasmpod_buf_;
static uint32_t wasmpod_buf_cap_;

WASMPOD_EXPORT_("wasmpod_abi_version") int32_t wasmpod_abi_version(void) {
	return WASMPOD_ABI_VERSION;
}

/* Returns a buffer of at least size bytes. A failed request (0) keeps the previous buffer. */
WASMPOD_EXPORT_("wasmpod_buffer") int32_t wasmpod_buffer(int32_t size) {
	if (size < 0) {
		return 0;
	}
	if (wasmpod_buf_ != NULL && (uint32_t)size <= wasmpod_buf_cap_) {
		return (int32_t)(uintptr_t)wasmpod_buf_;
	}
	uint32_t n = (uint32_t)size;
	if (n < WASMPOD_BUFFER_ROUND_) {
		n = WASMPOD_BUFFER_ROUND_;
	} else if (n % WASMPOD_BUFFER_ROUND_ != 0) {
		if (n > UINT32_MAX - WASMPOD_BUFFER_ROUND_) {
			return 0;
		}
		n += WASMPOD_BUFFER_ROUND_ - n % WASMPOD_BUFFER_ROUND_;
	}
	uint8_t *p = malloc(n);
	if (p == NULL) {
		return 0;
	}
	free(wasmpod_buf_);
	wasmpod_buf_ = p;
	wasmpod_buf_cap_ = n;
	return (int32_t)(uintptr_t)p;
}

static int wasmpod_input_(int32_t len, wasmpod_bytes *in) {
	if (len < 0 || (uint32_t)len > wasmpod_buf_cap_) {
		wasmpod_msg_ m = {{0}, 0};
		wasmpod_msg_cat_(&m, "wasmpod: input length ");
		wasmpod_msg_u32_(&m, (uint32_t)len);
		wasmpod_msg_cat_(&m, " exceeds the ");
		wasmpod_msg_u32_(&m, wasmpod_buf_cap_);
		wasmpod_msg_cat_(&m, "-byte buffer");
		wasmpod_fail(1, m.b, m.n);
		return -1;
	}
	in->ptr = wasmpod_buf_;
	in->len = (uint32_t)len;
	return 0;
}

/* ---- Output ------------------------------------------------------------------------------ */

static uint8_t *wasmpod_out_;
static uint32_t wasmpod_out_cap_;

uint8_t *wasmpod_output(uint32_t size) {
	if (size <= wasmpod_out_cap_ && wasmpod_out_ != NULL) {
		return wasmpod_out_;
	}
	uint32_t n = wasmpod_out_cap_ < 256 ? 256 : wasmpod_out_cap_;
	while (n < size) {
		n = n > UINT32_MAX / 2 ? size : n * 2;
	}
	uint8_t *p = realloc(wasmpod_out_, n);
	if (p == NULL) {
		return NULL;
	}
	wasmpod_out_ = p;
	wasmpod_out_cap_ = n;
	return p;
}

wasmpod_bytes wasmpod_str(const char *s) {
	wasmpod_bytes b = {(const uint8_t *)s, s == NULL ? 0 : (uint32_t)strlen(s)};
	return b;
}

/* ---- Errors ------------------------------------------------------------------------------ */

/* Cuts a message of len bytes to at most max without splitting a UTF-8 sequence: backs up over
 * the continuation bytes (at most 3) of a character the limit would split. */
static size_t wasmpod_cut_(const char *msg, size_t len, size_t max) {
	if (len <= max) {
		return len;
	}
	size_t end = max;
	for (int i = 0; i < 3 && end > 0 && ((unsigned char)msg[end] & 0xC0) == 0x80; i++) {
		end--;
	}
	return ((unsigned char)msg[end] & 0xC0) == 0x80 ? max : end;
}

int32_t wasmpod_fail(int32_t code, const char *msg, size_t len) {
	if (msg != NULL) {
		len = wasmpod_cut_(msg, len, WASMPOD_MSG_MAX_);
	}
	if (msg != NULL && len > 0) {
		wasmpod_host_error_(msg, (int32_t)len);
	}
	code = wasmpod_status_(code);
	return code == 0 ? 1 : code;
}

static char wasmpod_fmt_[WASMPOD_MSG_MAX_];

/* The length of msg without a UTF-8 sequence that its last len bytes start but do not finish
 * (what vsnprintf leaves when it truncates). */
static size_t wasmpod_drop_partial_(const char *msg, size_t len) {
	size_t i = len;
	while (i > 0 && len - i < 3 && ((unsigned char)msg[i - 1] & 0xC0) == 0x80) {
		i--;
	}
	if (i == 0) {
		return len;
	}
	unsigned char lead = (unsigned char)msg[i - 1];
	size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
	return need > 1 && len - (i - 1) < need ? i - 1 : len;
}

static size_t wasmpod_vformat_(const char *fmt, va_list ap) {
	int n = vsnprintf(wasmpod_fmt_, sizeof wasmpod_fmt_, fmt, ap);
	if (n < 0) {
		return 0;
	}
	if ((size_t)n < sizeof wasmpod_fmt_) {
		return (size_t)n;
	}
	return wasmpod_drop_partial_(wasmpod_fmt_, sizeof wasmpod_fmt_ - 1);
}

int32_t wasmpod_failf(int32_t code, const char *fmt, ...) {
	va_list ap;
	va_start(ap, fmt);
	size_t n = wasmpod_vformat_(fmt, ap);
	va_end(ap);
	return wasmpod_fail(code, wasmpod_fmt_, n);
}

/* ---- Calls -------------------------------------------------------------------------------- */

static int64_t wasmpod_finish_(int32_t rc, wasmpod_bytes out) {
	if (rc != 0) {
		rc = wasmpod_status_(rc);
		return -(int64_t)rc;
	}
	if (out.len > 0 && out.ptr == NULL) {
		wasmpod_msg_ m = {{0}, 0};
		wasmpod_msg_cat_(&m, "wasmpod: handler returned ");
		wasmpod_msg_u32_(&m, out.len);
		wasmpod_msg_cat_(&m, " bytes at address 0");
		return -(int64_t)wasmpod_fail(1, m.b, m.n);
	}
	return wasmpod_result(out);
}

int64_t wasmpod_call_(int32_t len, wasmpod_handler_fn fn) {
	wasmpod_bytes in, out = {NULL, 0};
	if (wasmpod_input_(len, &in) != 0) {
		return -1;
	}
	return wasmpod_finish_(fn(in, &out), out);
}

int64_t wasmpod_call_merge_(int32_t len, wasmpod_merge_fn fn) {
	wasmpod_bytes in, out = {NULL, 0};
	wasmpod_parts parts;
	if (wasmpod_input_(len, &in) != 0) {
		return -1;
	}
	if (wasmpod_parts_init(&parts, in) != 0) {
		wasmpod_msg_ m = {{0}, 0};
		wasmpod_msg_cat_(&m, "wasmpod: malformed merge input (");
		wasmpod_msg_u32_(&m, in.len);
		wasmpod_msg_cat_(&m, " bytes)");
		return -(int64_t)wasmpod_fail(1, m.b, m.n);
	}
	return wasmpod_finish_(fn(&parts, &out), out);
}

int64_t wasmpod_call_snapshot_(wasmpod_snapshot_fn fn) {
	wasmpod_bytes out = {NULL, 0};
	return wasmpod_finish_(fn(&out), out);
}

int32_t wasmpod_call_restore_(int32_t len, wasmpod_restore_fn fn) {
	wasmpod_bytes in;
	if (wasmpod_input_(len, &in) != 0) {
		return 1;
	}
	return wasmpod_status_(fn(in));
}

/* ---- Merge framing ------------------------------------------------------------------------ */

static uint32_t wasmpod_u32le_(const uint8_t *p) {
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

#define WASMPOD_MISSING_ 0xFFFFFFFFu

int wasmpod_parts_init(wasmpod_parts *parts, wasmpod_bytes in) {
	memset(parts, 0, sizeof *parts);
	if (in.len < 4) {
		return -1;
	}
	const uint8_t *p = in.ptr, *end = in.ptr + in.len;
	uint32_t count = wasmpod_u32le_(p), missing = 0;
	p += 4;
	for (uint32_t i = 0; i < count; i++) {
		if ((size_t)(end - p) < 4) {
			return -1;
		}
		uint32_t n = wasmpod_u32le_(p);
		p += 4;
		if (n == WASMPOD_MISSING_) {
			missing++;
		} else if ((size_t)(end - p) < n) {
			return -1;
		} else {
			p += n;
		}
	}
	if (p != end) {
		return -1;
	}
	parts->count = count;
	parts->missing = missing;
	parts->next_ = in.ptr + 4;
	parts->index_ = 0;
	return 0;
}

int wasmpod_parts_next(wasmpod_parts *parts, wasmpod_part *part) {
	if (parts->index_ >= parts->count) {
		return 0;
	}
	uint32_t n = wasmpod_u32le_(parts->next_);
	parts->next_ += 4;
	part->index = parts->index_++;
	if (n == WASMPOD_MISSING_) {
		part->present = 0;
		part->data.ptr = NULL;
		part->data.len = 0;
	} else {
		part->present = 1;
		part->data.ptr = parts->next_;
		part->data.len = n;
		parts->next_ += n;
	}
	return 1;
}

/* ---- Log, config, metrics, scale --------------------------------------------------------- */

void wasmpod_log(int32_t level, const char *msg, size_t len) {
	if (len > INT32_MAX) {
		len = INT32_MAX;
	}
	wasmpod_host_log_(level, msg, (int32_t)len);
}

void wasmpod_logs(int32_t level, const char *msg) {
	wasmpod_log(level, msg, strlen(msg));
}

void wasmpod_logf(int32_t level, const char *fmt, ...) {
	va_list ap;
	va_start(ap, fmt);
	size_t n = wasmpod_vformat_(fmt, ap);
	va_end(ap);
	wasmpod_log(level, wasmpod_fmt_, n);
}

int32_t wasmpod_config_get(const char *key, char *buf, uint32_t cap) {
	if (cap > INT32_MAX) {
		cap = INT32_MAX;
	}
	return wasmpod_host_config_get_(key, (int32_t)strlen(key), buf, (int32_t)cap);
}

char *wasmpod_config_dup(const char *key) {
	char small[256];
	int32_t n = wasmpod_config_get(key, small, sizeof small);
	while (n >= 0) {
		char *v = malloc((size_t)n + 1);
		if (v == NULL) {
			return NULL;
		}
		if ((size_t)n <= sizeof small) {
			memcpy(v, small, (size_t)n);
			v[n] = '\0';
			return v;
		}
		int32_t m = wasmpod_config_get(key, v, (uint32_t)n);
		if (m == n) {
			v[n] = '\0';
			return v;
		}
		/* the value changed between the two lookups: try again with its new length */
		free(v);
		n = m;
		if (n >= 0 && (size_t)n <= sizeof small) {
			n = wasmpod_config_get(key, small, sizeof small);
		}
	}
	return NULL;
}

int wasmpod_config_equals(const char *key, const char *value) {
	size_t want = strlen(value);
	char small[256];
	char *buf = want <= sizeof small ? small : malloc(want);
	if (buf == NULL) {
		return 0;
	}
	int32_t n = wasmpod_config_get(key, buf, (uint32_t)want);
	int eq = n >= 0 && (size_t)n == want && memcmp(buf, value, want) == 0;
	if (buf != small) {
		free(buf);
	}
	return eq;
}

int32_t wasmpod_metric_define(int32_t kind, const char *name, const char *help) {
	if (help == NULL) {
		help = "";
	}
	return wasmpod_host_metric_define_(kind, name, (int32_t)strlen(name), help,
	                                   (int32_t)strlen(help));
}

void wasmpod_metric_record(int32_t id, double value) {
	wasmpod_host_metric_record_(id, value);
}

int32_t wasmpod_scale(int32_t delta) {
	return wasmpod_host_scale_(delta);
}
