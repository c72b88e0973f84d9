;; A native-ABI module that writes files into its first mount (preopen fd 3), removes their
;; names and keeps their descriptors: the data stays on the disk while a descriptor holds it, so
;; a quota that gave the bytes back when the name went could be filled again and again. The
;; input is op (byte 0), n (byte 1) and mode (byte 2):
;;   0 n times: create "x" (truncating it), write 1 MiB to it, then remove the name, keeping the
;;     descriptor: mode 0 unlinks "x"; mode 1 creates an empty "t" and renames it over "x".
;;     Stops at the first error.
;;   1 fd_close every descriptor op 0 kept, in this call or earlier ones
;; The output is two u32 at 65536: how many files were written and removed (op 0) or closed
;; (op 1), and the errno that stopped op 0 (0 if none; 65535 for a short write) or of the last
;; fd_close.
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_unlink_file" (func $unlink (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_rename"
    (func $rename (param i32 i32 i32 i32 i32 i32) (result i32)))
  ;; 8: path_open's result; 16 "x"; 20 "t"; 32: the iovec; 40: fd_write's count; 65536: the
  ;; call's buffer; 131072: the kept descriptors (room for 16384); 1 MiB-2 MiB: what is written.
  (memory (export "memory") 33)
  (data (i32.const 16) "x")
  (data (i32.const 20) "t")
  (data (i32.const 32) "\00\00\10\00\00\00\10\00") ;; {buf: 1 MiB, len: 1 MiB}
  (global $kept (mut i32) (i32.const 0))
  (func (export "wasmpod_abi_version") (result i32) (i32.const 1))
  (func (export "wasmpod_buffer") (param $size i32) (result i32)
    (if (result i32) (i32.le_u (local.get $size) (i32.const 65536))
      (then (i32.const 65536)) (else (i32.const 0))))
  (func $slot (param $i i32) (result i32)
    (i32.add (i32.const 131072) (i32.shl (local.get $i) (i32.const 2))))
  ;; create opens name (at 16 or 20) with O_CREAT|O_TRUNC for reading and writing; the
  ;; descriptor is at 8.
  (func $create (param $name i32) (result i32)
    (call $path_open (i32.const 3) (i32.const 0) (local.get $name) (i32.const 1)
      (i32.const 9) (i64.const 66) (i64.const 0) (i32.const 0) (i32.const 8)))
  (func $fill (param $n i32) (param $mode i32) (result i32)
    (local $errno i32) (local $fd i32) (local $done i32)
    (block $stop
      (loop $next
        (br_if $stop (i32.ge_u (local.get $done) (local.get $n)))
        (br_if $stop (i32.ge_u (global.get $kept) (i32.const 16384)))
        (local.set $errno (call $create (i32.const 16)))
        (br_if $stop (local.get $errno))
        (local.set $fd (i32.load (i32.const 8)))
        (i32.store (call $slot (global.get $kept)) (local.get $fd))
        (global.set $kept (i32.add (global.get $kept) (i32.const 1)))
        (local.set $errno (call $fd_write (local.get $fd) (i32.const 32) (i32.const 1) (i32.const 40)))
        (br_if $stop (local.get $errno))
        (if (i32.ne (i32.load (i32.const 40)) (i32.const 0x100000))
          (then (local.set $errno (i32.const 65535)) (br $stop)))
        (if (i32.eqz (local.get $mode))
          (then (local.set $errno (call $unlink (i32.const 3) (i32.const 16) (i32.const 1))))
          (else
            (local.set $errno (call $create (i32.const 20)))
            (br_if $stop (local.get $errno))
            (local.set $errno (call $fd_close (i32.load (i32.const 8))))
            (br_if $stop (local.get $errno))
            (local.set $errno (call $rename (i32.const 3) (i32.const 20) (i32.const 1)
              (i32.const 3) (i32.const 16) (i32.const 1)))))
        (br_if $stop (local.get $errno))
        (local.set $done (i32.add (local.get $done) (i32.const 1)))
        (br $next)))
    (i32.store (i32.const 65540) (local.get $errno))
    (local.get $done))
  (func (export "wasmpod_handle") (param $len i32) (result i64)
    (local $op i32) (local $done i32)
    (local.set $op (i32.load8_u (i32.const 65536)))
    (if (i32.eqz (local.get $op))
      (then
        (local.set $done (call $fill (i32.load8_u (i32.const 65537)) (i32.load8_u (i32.const 65538))))))
    (if (i32.eq (local.get $op) (i32.const 1))
      (then
        (i32.store (i32.const 65540) (i32.const 0))
        (block $stop
          (loop $next
            (br_if $stop (i32.eqz (global.get $kept)))
            (global.set $kept (i32.sub (global.get $kept) (i32.const 1)))
            (i32.store (i32.const 65540) (call $fd_close (i32.load (call $slot (global.get $kept)))))
            (local.set $done (i32.add (local.get $done) (i32.const 1)))
            (br $next)))))
    (i32.store (i32.const 65536) (local.get $done))
    (i64.or (i64.shl (i64.const 8) (i64.const 32)) (i64.const 65536))))
