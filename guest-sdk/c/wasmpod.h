/*
 * wasmpod.h - C SDK for the wasmpod native guest ABI v1 (see ../ABI.md).
 *
 * Compile wasmpod.c together with the plugin's sources as a WASI reactor:
 *
 *   clang --target=wasm32-wasi --sysroot=/usr -O2 -mexec-model=reactor                         \
 *         -I guest-sdk/c -o plugin.wasm plugin.c guest-sdk/c/wasmpod.c
 *
 * wasmpod.c exports memory, wasmpod_abi_version and wasmpod_buffer. A plugin adds one export per
 * role and lifecycle hook it implements with the registration macros below, each used once at
 * file scope:
 *
 *   static int32_t sum(wasmpod_bytes in, wasmpod_bytes *out) { ... return 0; }
 *   WASMPOD_LEAF(sum)
 *
 * A hook that is not registered is not exported, and the host then applies the ABI default:
 * start, stop and tick succeed, health reports healthy, there is no state to snapshot.
 *
 * Handlers return 0 on success and set *out, or return an application error code (> 0; a
 * negative code is negated, so -3 and 3 mean the same). Use wasmpod_fail / wasmpod_failf to
 * attach a message. Input bytes live in the SDK buffer, which the host overwrites on the next
 * call: copy what you keep. Output must stay valid until the handler returns to the host: point
 * it at static storage, into the input, or at memory from wasmpod_output(), which the SDK keeps
 * until the next call.
 *
 * The SDK is single-threaded, like the wasm32-wasi target.
 */
#ifndef WASMPOD_H
#define WASMPOD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The guest ABI version this SDK speaks. */
#define WASMPOD_ABI_VERSION 1

/* A byte range in linear memory. */
typedef struct wasmpod_bytes {
	const uint8_t *ptr;
	uint32_t len;
} wasmpod_bytes;

/* Log levels of wasmpod_log. */
enum wasmpod_level {
	WASMPOD_DEBUG = 0,
	WASMPOD_INFO = 1,
	WASMPOD_WARN = 2,
	WASMPOD_ERROR = 3
};

/* Results of a health hook. */
enum wasmpod_health {
	WASMPOD_HEALTHY = 0,   /* alive and ready */
	WASMPOD_NOT_READY = 1, /* alive, but send no traffic */
	WASMPOD_UNHEALTHY = 2  /* restart the instance */
};

/* Metric kinds of wasmpod_metric_define. */
enum wasmpod_metric_kind {
	WASMPOD_COUNTER = 0,
	WASMPOD_GAUGE = 1,
	WASMPOD_HISTOGRAM = 2
};

/* ---- Exports defined by wasmpod.c -------------------------------------------------------- */

int32_t wasmpod_abi_version(void);
int32_t wasmpod_buffer(int32_t size);

/* ---- Callback types --------------------------------------------------------------------- */

/* Request handler, leaf, HTTP handler (framed bytes, ABI 2.2) and stage. */
typedef int32_t (*wasmpod_handler_fn)(wasmpod_bytes in, wasmpod_bytes *out);

/* Merge parts, decoded from the framing of ABI 2.1 (see wasmpod_parts_next). */
typedef struct wasmpod_parts {
	uint32_t count;   /* number of parts, present and missing */
	uint32_t missing; /* number of missing parts */
	/* iteration state, private */
	const uint8_t *next_;
	uint32_t index_;
} wasmpod_parts;

/* One merge part. A missing part has present == 0 and an empty data range. */
typedef struct wasmpod_part {
	uint32_t index;
	int present;
	wasmpod_bytes data;
} wasmpod_part;

/* Merge handler: parts has been validated, so iterating it cannot fail. */
typedef int32_t (*wasmpod_merge_fn)(wasmpod_parts *parts, wasmpod_bytes *out);

typedef int32_t (*wasmpod_start_fn)(void);               /* 0 ok, else fails the instance */
typedef int32_t (*wasmpod_stop_fn)(int64_t grace_ms);    /* 0 ok */
typedef int32_t (*wasmpod_health_fn)(void);              /* an enum wasmpod_health value */
typedef int32_t (*wasmpod_tick_fn)(int64_t now_unix_ms); /* 0 ok, else a failed tick */
typedef int32_t (*wasmpod_snapshot_fn)(wasmpod_bytes *state); /* 0 ok, like a handler */
typedef int32_t (*wasmpod_restore_fn)(wasmpod_bytes state);   /* 0 ok, else fails the start */

/* ---- Registration macros: each defines one export --------------------------------------- */

#define WASMPOD_EXPORT_(name) __attribute__((export_name(name), visibility("default")))

/* wasmpod_handle: request handler (main, sidecar, ambassador, adapter). */
#define WASMPOD_HANDLE(fn)                                                                      \
	WASMPOD_EXPORT_("wasmpod_handle") int64_t wasmpod_export_handle_(int32_t len) {         \
		return wasmpod_call_(len, (fn));                                                \
	}
/* wasmpod_leaf: scatter/gather leaf. */
#define WASMPOD_LEAF(fn)                                                                        \
	WASMPOD_EXPORT_("wasmpod_leaf") int64_t wasmpod_export_leaf_(int32_t len) {             \
		return wasmpod_call_(len, (fn));                                                \
	}
/* wasmpod_merge: scatter/gather merge; fn gets the decoded parts. */
#define WASMPOD_MERGE(fn)                                                                       \
	WASMPOD_EXPORT_("wasmpod_merge") int64_t wasmpod_export_merge_(int32_t len) {           \
		return wasmpod_call_merge_(len, (fn));                                          \
	}
/* wasmpod_http: HTTP handler; fn gets and returns the framed bytes of ABI 2.2. */
#define WASMPOD_HTTP(fn)                                                                        \
	WASMPOD_EXPORT_("wasmpod_http") int64_t wasmpod_export_http_(int32_t len) {             \
		return wasmpod_call_(len, (fn));                                                \
	}
/* wasmpod_stage: work-queue stage (input file contents -> output file contents). */
#define WASMPOD_STAGE(fn)                                                                       \
	WASMPOD_EXPORT_("wasmpod_stage") int64_t wasmpod_export_stage_(int32_t len) {           \
		return wasmpod_call_(len, (fn));                                                \
	}
/* wasmpod_start: once per instance before it serves. */
#define WASMPOD_ON_START(fn)                                                                    \
	WASMPOD_EXPORT_("wasmpod_start") int32_t wasmpod_export_start_(void) {                  \
		wasmpod_start_fn f_ = (fn);                                                     \
		return wasmpod_status_(f_());                                                   \
	}
/* wasmpod_stop: once per instance when the module stops. */
#define WASMPOD_ON_STOP(fn)                                                                     \
	WASMPOD_EXPORT_("wasmpod_stop") int32_t wasmpod_export_stop_(int64_t grace_ms) {        \
		wasmpod_stop_fn f_ = (fn);                                                      \
		return wasmpod_status_(f_(grace_ms));                                           \
	}
/* wasmpod_health: probes. */
#define WASMPOD_ON_HEALTH(fn)                                                                   \
	WASMPOD_EXPORT_("wasmpod_health") int32_t wasmpod_export_health_(void) {                \
		wasmpod_health_fn f_ = (fn);                                                    \
		int32_t h_ = f_();                                                              \
		return h_ < 0 ? WASMPOD_UNHEALTHY : h_;                                         \
	}
/* wasmpod_tick: every tick interval of the module's spec. */
#define WASMPOD_ON_TICK(fn)                                                                     \
	WASMPOD_EXPORT_("wasmpod_tick") int32_t wasmpod_export_tick_(int64_t now_unix_ms) {     \
		wasmpod_tick_fn f_ = (fn);                                                      \
		return wasmpod_status_(f_(now_unix_ms));                                        \
	}
/* wasmpod_snapshot: the instance state saved when the module stops. */
#define WASMPOD_ON_SNAPSHOT(fn)                                                                 \
	WASMPOD_EXPORT_("wasmpod_snapshot") int64_t wasmpod_export_snapshot_(void) {            \
		return wasmpod_call_snapshot_((fn));                                            \
	}
/* wasmpod_restore: a saved state, when an instance starts with one. */
#define WASMPOD_ON_RESTORE(fn)                                                                  \
	WASMPOD_EXPORT_("wasmpod_restore") int32_t wasmpod_export_restore_(int32_t len) {       \
		return wasmpod_call_restore_(len, (fn));                                        \
	}

/* ---- Results and errors ----------------------------------------------------------------- */

/* Attaches msg (len bytes) to the current call's failure (the error import) and returns code,
 * made positive (0 becomes 1), so a handler can `return wasmpod_fail(2, "bad input", 9);`. */
int32_t wasmpod_fail(int32_t code, const char *msg, size_t len);

/* wasmpod_fail with a printf-style message (truncated to 4 KiB, the host's limit). */
int32_t wasmpod_failf(int32_t code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Returns a scratch area of at least size bytes for output, owned by the SDK and kept until the
 * next call of any export. Like realloc, a larger request may move it but keeps its contents, so
 * output can be grown while it is written: use the pointer of the last call. It is never the
 * input buffer. NULL if memory is exhausted (the previous area stays valid). */
uint8_t *wasmpod_output(uint32_t size);

/* Packs a handler result as the ABI's i64: (len << 32) | ptr. */
static inline int64_t wasmpod_result(wasmpod_bytes out) {
	return out.len == 0 ? 0 : (int64_t)(((uint64_t)out.len << 32) | (uint32_t)(uintptr_t)out.ptr);
}

/* A byte range over a NUL-terminated string (not including the NUL). */
wasmpod_bytes wasmpod_str(const char *s);

/* ---- Merge framing ---------------------------------------------------------------------- */

/* Validates framed merge input (ABI 2.1) and prepares parts for iteration. Returns 0, or -1 if
 * the framing is malformed (truncated, trailing bytes, or a length past the end). */
int wasmpod_parts_init(wasmpod_parts *parts, wasmpod_bytes in);

/* Stores the next part in *part and returns 1, or returns 0 after the last one. */
int wasmpod_parts_next(wasmpod_parts *parts, wasmpod_part *part);

/* ---- Host imports, wrapped -------------------------------------------------------------- */

/* One log line (len bytes) at level. */
void wasmpod_log(int32_t level, const char *msg, size_t len);
/* A NUL-terminated or printf-style log line (formatted lines are truncated to 4 KiB). */
void wasmpod_logs(int32_t level, const char *msg);
void wasmpod_logf(int32_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Looks up a config key: returns -1 if there is no such key, else the value's length. The value
 * is copied to buf only if it fits in cap bytes (no NUL is added). */
int32_t wasmpod_config_get(const char *key, char *buf, uint32_t cap);

/* The value of a config key as a NUL-terminated string from malloc (free it), or NULL if the key
 * is absent or memory is exhausted. */
char *wasmpod_config_dup(const char *key);

/* 1 if the config key exists and its value equals value (a NUL-terminated string), else 0. */
int wasmpod_config_equals(const char *key, const char *value);

/* Defines (or finds) a metric; returns its id (>= 0) or a negative error (see ABI section 4). */
int32_t wasmpod_metric_define(int32_t kind, const char *name, const char *help);
/* Counter: adds value; gauge: sets it; histogram: observes it. */
void wasmpod_metric_record(int32_t id, double value);

/* Asks the host to grow (delta > 0) or shrink its warm instance pool. Returns the new target
 * size, or -1 if scaling is not allowed for this module. */
int32_t wasmpod_scale(int32_t delta);

/* ---- Used by the macros ----------------------------------------------------------------- */

int64_t wasmpod_call_(int32_t len, wasmpod_handler_fn fn);
int64_t wasmpod_call_merge_(int32_t len, wasmpod_merge_fn fn);
int64_t wasmpod_call_snapshot_(wasmpod_snapshot_fn fn);
int32_t wasmpod_call_restore_(int32_t len, wasmpod_restore_fn fn);
static inline int32_t wasmpod_status_(int32_t rc) {
	return rc < 0 ? (rc == INT32_MIN ? INT32_MAX : -rc) : rc;
}

#ifdef __cplusplus
}
#endif

#endif /* WASMPOD_H */
