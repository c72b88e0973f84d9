// as-merge: the AssemblyScript twin of plugins/echo. A request handler that returns its request
// unchanged and a merge that joins the parts that arrived with newlines, prefixed with
// "missing=N\n" when some parts are missing.
export { wasmpod_abi_version, wasmpod_buffer } from "wasmpod-sdk";
import { input, mergeInput, ok, fail } from "wasmpod-sdk";

export function wasmpod_handle(len: i32): i64 {
  return ok(input(len)); // the output may alias the input
}

export function wasmpod_merge(len: i32): i64 {
  const parts = mergeInput(len);
  if (parts == null) return fail(1, "malformed merge input");
  const prefix = parts.missing > 0 ? String.UTF8.encode("missing=" + parts.missing.toString() + "\n") : new ArrayBuffer(0);
  const present = parts.present();
  let size = prefix.byteLength;
  for (let i = 0; i < present.length; i++) {
    size += present[i].byteLength + (i > 0 ? 1 : 0);
  }
  const out = new Uint8Array(size);
  out.set(Uint8Array.wrap(prefix), 0);
  let at = prefix.byteLength;
  for (let i = 0; i < present.length; i++) {
    if (i > 0) out[at++] = 0x0a;
    out.set(present[i], at);
    at += present[i].byteLength;
  }
  return ok(out);
}
