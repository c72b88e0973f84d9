// Fails every call with a message longer than the host keeps, made of multi-byte characters
// (TestLongErrorMessage).
export { wasmpod_abi_version, wasmpod_buffer } from "wasmpod-sdk";
import { fail } from "wasmpod-sdk";

export function wasmpod_handle(len: i32): i64 {
  return fail(1, "xy" + "€".repeat(2000));
}
