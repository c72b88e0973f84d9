// as-leaf: the AssemblyScript twin of plugins/benchleaf. A request handler that does nothing
// (the cost of one call) and a leaf that sums its input bytes into a little-endian u64.
export { wasmpod_abi_version, wasmpod_buffer } from "wasmpod-sdk";
import { input, ok, okEmpty } from "wasmpod-sdk";

const sumOut = new Uint8Array(8);

export function wasmpod_handle(len: i32): i64 {
  return okEmpty();
}

export function wasmpod_leaf(len: i32): i64 {
  const data = input(len);
  const p = data.dataStart;
  let s: u64 = 0;
  for (let i = 0; i < data.byteLength; i++) {
    s += load<u8>(p + <usize>i);
  }
  store<u64>(sumOut.dataStart, s); // wasm is little-endian
  return ok(sumOut);
}
