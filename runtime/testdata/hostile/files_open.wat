;; A native-ABI module that opens a file of its first mount (preopen fd 3) again and again and
;; keeps every descriptor, across calls: an attack on the host's file descriptors, which wazero
;; gives a guest without bound. The input is op (byte 0) and n (bytes 1-4, little-endian):
;;   0 path_open("f") read-only on fd 3 up to n times, stopping at the first error
;;   1 fd_close every descriptor op 0 kept, in this call or earlier ones
;; The output is two u32 at 65536: how many were opened (op 0) or closed (op 1), and the errno
;; that stopped op 0 (0 if none) or of the last fd_close.
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  ;; 0-65535: the name and path_open's result; 65536: the call's buffer; 131072-262143: the
  ;; kept descriptors, room for 32768.
  (memory (export "memory") 4)
  (data (i32.const 16) "f")
  (global $kept (mut i32) (i32.const 0))
  (func (export "wasmpod_abi_version") (result i32) (i32.const 1))
  (func (export "wasmpod_buffer") (param $size i32) (result i32)
    (if (result i32) (i32.le_u (local.get $size) (i32.const 65536))
      (then (i32.const 65536)) (else (i32.const 0))))
  (func $slot (param $i i32) (result i32)
    (i32.add (i32.const 131072) (i32.shl (local.get $i) (i32.const 2))))
  (func (export "wasmpod_handle") (param $len i32) (result i64)
    (local $op i32) (local $n i32) (local $done i32) (local $errno i32)
    (local.set $op (i32.load8_u (i32.const 65536)))
    (local.set $n (i32.load (i32.const 65537)))
    (if (i32.eqz (local.get $op))
      (then
        (block $stop
          (loop $next
            (br_if $stop (i32.ge_u (local.get $done) (local.get $n)))
            (br_if $stop (i32.ge_u (global.get $kept) (i32.const 32768)))
            ;; dirflags 1: follow symlinks; oflags 0; rights FD_READ
            (local.set $errno (call $path_open (i32.const 3) (i32.const 1) (i32.const 16) (i32.const 1)
              (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 8)))
            (br_if $stop (local.get $errno))
            (i32.store (call $slot (global.get $kept)) (i32.load (i32.const 8)))
            (global.set $kept (i32.add (global.get $kept) (i32.const 1)))
            (local.set $done (i32.add (local.get $done) (i32.const 1)))
            (br $next)))))
    (if (i32.eq (local.get $op) (i32.const 1))
      (then
        (block $stop
          (loop $next
            (br_if $stop (i32.eqz (global.get $kept)))
            (global.set $kept (i32.sub (global.get $kept) (i32.const 1)))
            (local.set $errno (call $fd_close (i32.load (call $slot (global.get $kept)))))
            (local.set $done (i32.add (local.get $done) (i32.const 1)))
            (br $next)))))
    (i32.store (i32.const 65536) (local.get $done))
    (i32.store (i32.const 65540) (local.get $errno))
    (i64.or (i64.shl (i64.const 8) (i64.const 32)) (i64.const 65536))))
