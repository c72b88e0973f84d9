// extism-as: an Extism plugin written with @extism/as-pdk, the AssemblyScript twin of
// plugins/extism-go, run unchanged by wasmpod with ABI extism.
//
//   leaf    sums the input bytes into a little-endian u64
//   merge   joins the present parts of a merge input (guest-sdk/ABI.md section 2.1) with
//           newlines, prefixed by "missing=N\n" when parts are missing; malformed framing fails
//   handle  "config:<key>" returns that config value, "fail:<msg>" fails with code 7,
//           "log:<msg>" logs msg at info, "logall:<msg>" logs "<level> <msg>" at debug, info,
//           warn and error (as-pdk 1.0.0 has no trace), "echo:<x>" returns x, "count:<var>"
//           adds one to a counter kept in the var and returns it, "fetch:<url>" GETs the URL
//           with the pdk's http_request import and returns the body; anything else fails (code 2)
//   noop    does nothing
//   count_vowels  an odd export name: the number of ASCII vowels of the input
import { Config, Host, LogLevel, Var } from "@extism/as-pdk";
import { error_set, http_request, length } from "@extism/as-pdk/lib/env";
import { Memory } from "@extism/as-pdk";

// abort is wired with --use abort=assembly/index/abort, so the module imports nothing but
// extism:host/env.
export function abort(message: string | null, fileName: string | null, line: u32, column: u32): void {
  unreachable();
}

function fail(code: i32, msg: string): i32 {
  error_set(Memory.allocateString(msg).offset);
  return code;
}

export function leaf(): i32 {
  const data = Host.input();
  let s: u64 = 0;
  for (let i = 0; i < data.length; i++) {
    s += <u64>data[i];
  }
  const out = new Uint8Array(8);
  store<u64>(out.dataStart, s); // wasm is little-endian
  Host.output(out);
  return 0;
}

export function merge(): i32 {
  const data = Host.input();
  const n = data.length;
  if (n < 4) return fail(1, "malformed merge input: no part count");
  const count = load<u32>(data.dataStart);
  let at = 4;
  let missing = 0;
  const present = new Array<Uint8Array>();
  for (let i: u32 = 0; i < count; i++) {
    if (n - at < 4) return fail(1, "malformed merge input: truncated part length");
    const len = load<u32>(data.dataStart + <usize>at);
    at += 4;
    if (len == 0xffffffff) {
      missing++;
      continue;
    }
    if (<u64>len > <u64>(n - at)) return fail(1, "malformed merge input: part longer than the input");
    present.push(data.subarray(at, at + <i32>len));
    at += <i32>len;
  }
  if (at != n) return fail(1, "malformed merge input: trailing bytes");
  const prefix = missing > 0 ? Uint8Array.wrap(String.UTF8.encode("missing=" + missing.toString() + "\n")) : new Uint8Array(0);
  let size = prefix.length;
  for (let i = 0; i < present.length; i++) size += present[i].length + (i > 0 ? 1 : 0);
  const out = new Uint8Array(size);
  out.set(prefix, 0);
  let o = prefix.length;
  for (let i = 0; i < present.length; i++) {
    if (i > 0) out[o++] = 0x0a;
    out.set(present[i], o);
    o += present[i].length;
  }
  Host.output(out);
  return 0;
}

export function handle(): i32 {
  const req = Host.inputString();
  const colon = req.indexOf(":");
  const cmd = colon < 0 ? req : req.substring(0, colon);
  const arg = colon < 0 ? "" : req.substring(colon + 1);
  if (cmd == "echo") {
    Host.output(Uint8Array.wrap(String.UTF8.encode(arg)));
    return 0;
  }
  if (cmd == "config") {
    const v = Config.get(arg);
    if (v == null) return fail(4, "no config key " + arg);
    Host.output(Uint8Array.wrap(String.UTF8.encode(v)));
    return 0;
  }
  if (cmd == "fail") return fail(7, arg);
  if (cmd == "log") {
    Host.log(LogLevel.Info, arg);
    return 0;
  }
  if (cmd == "logall") {
    Host.log(LogLevel.Debug, "debug " + arg);
    Host.log(LogLevel.Info, "info " + arg);
    Host.log(LogLevel.Warn, "warn " + arg);
    Host.log(LogLevel.Error, "error " + arg);
    return 0;
  }
  if (cmd == "count") {
    const prev = Var.getString(arg);
    const n = (prev == null ? 0 : I32.parseInt(prev)) + 1;
    Var.set(arg, Uint8Array.wrap(String.UTF8.encode(n.toString())));
    Host.output(Uint8Array.wrap(String.UTF8.encode(n.toString())));
    return 0;
  }
  if (cmd == "fetch") {
    const req = Memory.allocateString('{"url":"' + arg + '","method":"GET","headers":{}}');
    const offs = http_request(req.offset, 0);
    if (offs == 0) {
      Host.output(new Uint8Array(0));
      return 0;
    }
    Host.outputMemory(new Memory(offs, length(offs)));
    return 0;
  }
  return fail(2, "unknown command: " + cmd);
}

export function noop(): i32 {
  return 0;
}

export function count_vowels(): i32 {
  const data = Host.input();
  let n = 0;
  for (let i = 0; i < data.length; i++) {
    const c = data[i];
    if (c == 0x61 || c == 0x65 || c == 0x69 || c == 0x6f || c == 0x75 || c == 0x41 || c == 0x45 || c == 0x49 || c == 0x4f || c == 0x55) n++;
  }
  Host.output(Uint8Array.wrap(String.UTF8.encode(n.toString())));
  return 0;
}
