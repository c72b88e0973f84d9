// as-lifecycle: exercises every lifecycle hook (same behaviour as plugins/c-lifecycle).
//
//   start     counts the instance's starts (the "starts" command reports them)
//   health    from config key "health": ready (or no key) -> 0, notready -> 1, unhealthy -> 2;
//             any other value -> 2
//   tick      counts ticks (the "ticks" command reports them)
//   snapshot  the counter as a little-endian u64 (8 bytes)
//   restore   loads that counter; any other length fails the start
//   stop      logs "stop: counter=N grace_ms=G" at info level
//
// Request handler commands (surrounding ASCII whitespace ignored): "inc" increments the counter
// and returns its new value in decimal, "state" returns the counter, "starts" and "ticks" their
// counts, all in decimal. Anything else fails with code 2 and message "unknown command: ...".
export { wasmpod_abi_version, wasmpod_buffer } from "wasmpod-sdk";
import { Health, config, fail, failStatus, info, input, ok, okString } from "wasmpod-sdk";

let counter: u64 = 0;
let starts: u64 = 0;
let ticks: u64 = 0;

export function wasmpod_start(): i32 {
  starts++;
  info("start: starts=" + starts.toString());
  return 0;
}

export function wasmpod_health(): i32 {
  const v = config("health");
  if (v == null || v == "ready") return Health.Healthy;
  if (v == "notready") return Health.NotReady;
  return Health.Unhealthy;
}

export function wasmpod_tick(nowUnixMs: i64): i32 {
  ticks++;
  return 0;
}

export function wasmpod_snapshot(): i64 {
  const state = new Uint8Array(8);
  store<u64>(state.dataStart, counter); // wasm is little-endian
  return ok(state);
}

export function wasmpod_restore(len: i32): i32 {
  const state = input(len);
  if (state.byteLength != 8) {
    return failStatus(1, "restore: want 8 bytes of state, got " + state.byteLength.toString());
  }
  counter = load<u64>(state.dataStart);
  return 0;
}

export function wasmpod_stop(graceMs: i64): i32 {
  info("stop: counter=" + counter.toString() + " grace_ms=" + graceMs.toString());
  return 0;
}

function isSpace(c: u8): bool {
  return c == 0x20 || (c >= 0x09 && c <= 0x0d);
}

export function wasmpod_handle(len: i32): i64 {
  const req = input(len);
  let start = 0;
  let end = req.byteLength;
  while (start < end && isSpace(req[start])) start++;
  while (end > start && isSpace(req[end - 1])) end--;
  const cmd = String.UTF8.decodeUnsafe(req.dataStart + <usize>start, <usize>(end - start));
  if (cmd == "inc") return okString((++counter).toString());
  if (cmd == "state") return okString(counter.toString());
  if (cmd == "starts") return okString(starts.toString());
  if (cmd == "ticks") return okString(ticks.toString());
  return fail(2, "unknown command: " + (cmd.length > 64 ? cmd.substring(0, 64) : cmd));
}
