// AssemblyScript SDK for the wasmpod native guest ABI v1 (see ../../ABI.md).
//
// AssemblyScript exports only what the entry file exports, so a plugin re-exports the two
// required functions and writes its own role and lifecycle exports with the helpers below:
//
//   export { wasmpod_abi_version, wasmpod_buffer } from "wasmpod-sdk";
//   import { input, ok, fail } from "wasmpod-sdk";
//
//   export function wasmpod_handle(len: i32): i64 {
//     const req = input(len);
//     if (req.length == 0) return fail(2, "empty request");
//     return ok(req);
//   }
//
// A hook a plugin does not export keeps the ABI default: start, stop and tick succeed, health
// reports healthy, there is no state to snapshot.
//
// Build with the flags in the README: they route AssemblyScript's abort, trace and seed to this
// SDK (wasmpodAbort, wasmpodTrace, wasmpodSeed), so that a module imports nothing outside
// "wasmpod" and "wasi_snapshot_preview1".

// ---- Host imports (module "wasmpod"); only those a plugin reaches end up imported ----------

@external("wasmpod", "log")
declare function host_log(level: i32, ptr: usize, len: i32): void;

@external("wasmpod", "error")
declare function host_error(ptr: usize, len: i32): void;

@external("wasmpod", "config_get")
declare function host_config_get(keyPtr: usize, keyLen: i32, bufPtr: usize, bufCap: i32): i32;

@external("wasmpod", "metric_define")
declare function host_metric_define(kind: i32, namePtr: usize, nameLen: i32, helpPtr: usize, helpLen: i32): i32;

@external("wasmpod", "metric_record")
declare function host_metric_record(id: i32, value: f64): void;

@external("wasmpod", "scale")
declare function host_scale(delta: i32): i32;

@external("wasi_snapshot_preview1", "random_get")
declare function wasi_random_get(buf: usize, len: usize): i32;

@external("wasi_snapshot_preview1", "clock_time_get")
declare function wasi_clock_time_get(clock: u32, precision: u64, timePtr: usize): i32;

/** The guest ABI version this SDK speaks. */
export const ABI_VERSION: i32 = 1;

// ---- Buffer ---------------------------------------------------------------------------------

const BUFFER_ROUND: i32 = 65536;
// ArrayBuffer's own limit is just under 1 GiB; refuse (return 0) rather than abort above it.
const BUFFER_MAX: i32 = (1 << 30) - BUFFER_ROUND;

// A global reference keeps the buffer alive; the GC never moves objects.
let buffer: ArrayBuffer | null = null;

/** `wasmpod_abi_version` export: re-export it from the plugin's entry file. */
export function wasmpod_abi_version(): i32 {
  return ABI_VERSION;
}

/**
 * `wasmpod_buffer` export: re-export it from the plugin's entry file. Returns a buffer of at least
 * `size` bytes, or 0 when `size` is negative or above ~1 GiB. A failed request keeps the previous
 * buffer. Running out of linear memory while growing traps (AssemblyScript's allocator cannot
 * report it).
 */
export function wasmpod_buffer(size: i32): usize {
  if (size < 0 || size > BUFFER_MAX) return 0;
  let b = buffer;
  if (b == null || size > b.byteLength) {
    const n = max(size, 1);
    b = new ArrayBuffer(((n + BUFFER_ROUND - 1) / BUFFER_ROUND) * BUFFER_ROUND);
    buffer = b;
  }
  return changetype<usize>(b);
}

/**
 * The input of the current call: the first `len` bytes of the buffer (the handler's argument).
 * It aliases the buffer, which the host overwrites on the next call: copy what you keep.
 */
export function input(len: i32): Uint8Array {
  const b = buffer;
  if (b == null) {
    if (len != 0) wasmpodAbort("wasmpod: input before any buffer was allocated");
    return new Uint8Array(0);
  }
  if (len < 0 || len > b.byteLength) {
    wasmpodAbort("wasmpod: input length " + (<u32>len).toString() + " exceeds the " + b.byteLength.toString() + "-byte buffer");
  }
  return Uint8Array.wrap(b, 0, len);
}

// ---- Results ----------------------------------------------------------------------------------

// Keeps the last output alive until the next call.
let kept: ArrayBuffer | null = null;

/** Packs an output location as the ABI's i64 result: (len << 32) | ptr. */
export function result(ptr: usize, len: i32): i64 {
  if (len == 0) return 0;
  return (<i64>len << 32) | <i64>(<u32>ptr);
}

/** Success with `out` as the output. The SDK keeps it alive until the next call. */
export function ok(out: Uint8Array): i64 {
  kept = out.buffer;
  return result(out.dataStart, out.byteLength);
}

/** Success with the bytes of `out` as the output. */
export function okBuffer(out: ArrayBuffer): i64 {
  kept = out;
  return result(changetype<usize>(out), out.byteLength);
}

/** Success with `out`, UTF-8 encoded, as the output. */
export function okString(out: string): i64 {
  return okBuffer(String.UTF8.encode(out));
}

/** Success with an empty output. */
export function okEmpty(): i64 {
  kept = null;
  return 0;
}

/**
 * Failure with application code `code` (made positive; 0 becomes 1): attaches `message` (if not
 * empty) to the call with the error import and returns the handler result `-code`.
 */
export function fail(code: i32, message: string = ""): i64 {
  if (message.length > 0) {
    const m = String.UTF8.encode(message);
    host_error(changetype<usize>(m), cutUTF8(m, 4096));
  }
  return -(<i64>status(code));
}

/** Like fail, for lifecycle exports that return i32 (start, stop, tick, restore): `code`. */
export function failStatus(code: i32, message: string = ""): i32 {
  return <i32>-fail(code, message);
}

/**
 * The length of the UTF-8 text `b` cut to at most `max` bytes (the host keeps 4 KiB of an error
 * message) without splitting a character: it backs up over the continuation bytes (at most 3)
 * of a character the limit would split.
 */
function cutUTF8(b: ArrayBuffer, max: i32): i32 {
  if (b.byteLength <= max) return b.byteLength;
  const p = changetype<usize>(b);
  let end = max;
  for (let i = 0; i < 3 && end > 0 && (load<u8>(p + end) & 0xc0) == 0x80; i++) end--;
  return (load<u8>(p + end) & 0xc0) == 0x80 ? max : end;
}

function status(code: i32): i32 {
  if (code == 0) return 1;
  if (code == i32.MIN_VALUE) return i32.MAX_VALUE;
  return code < 0 ? -code : code;
}

// ---- Merge framing --------------------------------------------------------------------------

const MISSING: u32 = 0xFFFFFFFF;

/** The parts of a merge input (ABI 2.1). A missing part (its shard failed or missed the deadline) is null. */
export class Parts {
  /** The parts in order; null for a missing one. Present parts alias the input. */
  readonly parts: Array<Uint8Array | null>;
  /** The number of missing parts. */
  readonly missing: i32;

  constructor(parts: Array<Uint8Array | null>, missing: i32) {
    this.parts = parts;
    this.missing = missing;
  }

  /** The number of parts, present and missing. */
  get length(): i32 {
    return this.parts.length;
  }

  /** Part i, or null if it is missing. */
  at(i: i32): Uint8Array | null {
    return this.parts[i];
  }

  /** The parts that arrived, in order. */
  present(): Array<Uint8Array> {
    const out = new Array<Uint8Array>(0);
    for (let i = 0; i < this.parts.length; i++) {
      const p = this.parts[i];
      if (p != null) out.push(p);
    }
    return out;
  }
}

/** Decodes framed merge input; null if the framing is malformed. */
export function parseParts(data: Uint8Array): Parts | null {
  const n = data.byteLength;
  const base = data.dataStart;
  if (n < 4) return null;
  const count = load<u32>(base);
  // every part takes at least 4 bytes: reject impossible counts before allocating
  if (<u64>count * 4 > <u64>(n - 4)) return null;
  const parts = new Array<Uint8Array | null>(<i32>count);
  let at = 4;
  let missing = 0;
  for (let i = 0; i < <i32>count; i++) {
    if (n - at < 4) return null;
    const len = load<u32>(base + at);
    at += 4;
    if (len == MISSING) {
      missing++;
      parts[i] = null;
    } else if (<u32>(n - at) < len) {
      return null;
    } else {
      parts[i] = data.subarray(at, at + <i32>len);
      at += <i32>len;
    }
  }
  if (at != n) return null;
  return new Parts(parts, missing);
}

/** The merge input of the current call (`len` bytes), decoded; null if malformed. */
export function mergeInput(len: i32): Parts | null {
  return parseParts(input(len));
}

/** Frames parts as the host does for a merge (null: a missing part). For tests. */
export function encodeParts(parts: Array<Uint8Array | null>): Uint8Array {
  let size = 4;
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i];
    size += 4 + (p == null ? 0 : p.byteLength);
  }
  const out = new Uint8Array(size);
  store<u32>(out.dataStart, <u32>parts.length);
  let at = 4;
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i];
    if (p == null) {
      store<u32>(out.dataStart + at, MISSING);
      at += 4;
    } else {
      store<u32>(out.dataStart + at, <u32>p.byteLength);
      at += 4;
      out.set(p, at);
      at += p.byteLength;
    }
  }
  return out;
}

// ---- Lifecycle ----------------------------------------------------------------------------------

/** What wasmpod_health returns. */
export enum Health {
  /** Alive and ready. */
  Healthy = 0,
  /** Alive, but send no traffic. */
  NotReady = 1,
  /** Restart the instance. */
  Unhealthy = 2,
}

// ---- Logging, config, metrics, scaling --------------------------------------------------------

/** Log levels of the log import. */
export enum Level {
  Debug = 0,
  Info = 1,
  Warn = 2,
  Error = 3,
}

/** Writes one line to the module's log sink. */
export function log(level: Level, message: string): void {
  const m = String.UTF8.encode(message);
  host_log(level, changetype<usize>(m), m.byteLength);
}

/** Logs a line at debug level. */
export function debug(message: string): void {
  log(Level.Debug, message);
}

/** Logs a line at info level. */
export function info(message: string): void {
  log(Level.Info, message);
}

/** Logs a line at warn level. */
export function warn(message: string): void {
  log(Level.Warn, message);
}

/** Logs a line at error level (to fail a call, use fail). */
export function error(message: string): void {
  log(Level.Error, message);
}

/** The raw value of a config key, or null if the module's config has no such key. */
export function configBytes(key: string): Uint8Array | null {
  const k = String.UTF8.encode(key);
  let buf = new Uint8Array(256);
  let n = host_config_get(changetype<usize>(k), k.byteLength, buf.dataStart, buf.byteLength);
  while (n > buf.byteLength) {
    buf = new Uint8Array(n);
    n = host_config_get(changetype<usize>(k), k.byteLength, buf.dataStart, buf.byteLength);
  }
  if (n < 0) return null;
  return buf.subarray(0, n);
}

/** The value of a config key (UTF-8 decoded), or null if there is no such key. */
export function config(key: string): string | null {
  const v = configBytes(key);
  if (v == null) return null;
  return String.UTF8.decodeUnsafe(v.dataStart, v.byteLength);
}

/** Metric kinds of the metric_define import. */
export enum MetricKind {
  Counter = 0,
  Gauge = 1,
  Histogram = 2,
}

/** A metric defined with the host. Define it once (e.g. in wasmpod_start) and keep it. */
export class Metric {
  /** The host's id, or the negative error of metric_define (then record does nothing). */
  readonly id: i32;

  constructor(kind: MetricKind, name: string, help: string = "") {
    const n = String.UTF8.encode(name);
    const h = String.UTF8.encode(help);
    this.id = host_metric_define(kind, changetype<usize>(n), n.byteLength, changetype<usize>(h), h.byteLength);
  }

  /** Whether the host accepted the definition (-1 invalid name, -2 other kind, -3 too many, -4 bad kind). */
  get valid(): bool {
    return this.id >= 0;
  }

  /** Counter: adds value; gauge: sets it; histogram: observes it. */
  record(value: f64): void {
    if (this.id >= 0) host_metric_record(this.id, value);
  }

  static counter(name: string, help: string = ""): Metric {
    return new Metric(MetricKind.Counter, name, help);
  }

  static gauge(name: string, help: string = ""): Metric {
    return new Metric(MetricKind.Gauge, name, help);
  }

  static histogram(name: string, help: string = ""): Metric {
    return new Metric(MetricKind.Histogram, name, help);
  }
}

/**
 * Asks the host to grow (delta > 0) or shrink its warm instance pool. Returns the new target
 * size, or -1 if scaling is not allowed for this module.
 */
export function scale(delta: i32): i32 {
  return host_scale(delta);
}

/** The wall clock in milliseconds since the Unix epoch (WASI clock_time_get; Date.now is not available). */
export function nowUnixMs(): i64 {
  const t = memory.data(8);
  if (wasi_clock_time_get(0, 1000000, t) != 0) return 0;
  return <i64>(load<u64>(t) / 1000000);
}

// ---- Runtime hooks, selected with --use at build time ----------------------------------------

/**
 * AssemblyScript's abort (`--use abort=~lib/wasmpod-sdk/assembly/index/wasmpodAbort`): attaches the message to the
 * failed call, logs it at error level and traps. The host discards the instance.
 */
export function wasmpodAbort(message: string | null = null, fileName: string | null = null, lineNumber: u32 = 0, columnNumber: u32 = 0): void {
  let m = message != null ? message : "abort";
  if (fileName != null) m += " (" + fileName + ":" + lineNumber.toString() + ":" + columnNumber.toString() + ")";
  const b = String.UTF8.encode(m);
  host_error(changetype<usize>(b), cutUTF8(b, 4096));
  host_log(Level.Error, changetype<usize>(b), b.byteLength);
  unreachable();
}

/** AssemblyScript's trace (`--use trace=~lib/wasmpod-sdk/assembly/index/wasmpodTrace`): a debug log line. */
export function wasmpodTrace(message: string, n: i32 = 0, a0: f64 = 0, a1: f64 = 0, a2: f64 = 0, a3: f64 = 0, a4: f64 = 0): void {
  let m = "trace: " + message;
  if (n > 0) m += " " + a0.toString();
  if (n > 1) m += ", " + a1.toString();
  if (n > 2) m += ", " + a2.toString();
  if (n > 3) m += ", " + a3.toString();
  if (n > 4) m += ", " + a4.toString();
  log(Level.Debug, m);
}

/** The seed of Math.random (`--use seed=~lib/wasmpod-sdk/assembly/index/wasmpodSeed`), from WASI random_get. */
export function wasmpodSeed(): f64 {
  const p = memory.data(8);
  if (wasi_random_get(p, 8) != 0) return <f64>nowUnixMs();
  return reinterpret<f64>((load<u64>(p) & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000);
}
