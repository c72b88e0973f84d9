;; A native-ABI module of attacks through host functions, which run outside the fuel checks.
;; The input is op (byte 0) and n (a little-endian u32 at bytes 4-7):
;;   0 metric_define of n gauges ("mAA", "mBA", ...), each with the whole 1 MiB data region as
;;     its help text; the output is how many were defined
;;   1 one fd_write to stdout of n buffers, each the 1 MiB data region ('a' without a newline);
;;     the output is fd_write's errno
;; The output is the 4-byte result at 0x20000.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasmpod" "metric_define" (func $metric_define (param i32 i32 i32 i32 i32) (result i32)))
  ;; 0x10000 input, 0x20000 output, 0x30000 name and nwritten, 0x40000-0x140000 data,
  ;; 0x140000 on: n iovecs of 8 bytes (up to 200,000).
  (memory (export "memory") 48)
  (func (export "wasmpod_abi_version") (result i32) (i32.const 1))
  (func (export "wasmpod_buffer") (param $size i32) (result i32)
    (if (result i32) (i32.le_u (local.get $size) (i32.const 65536))
      (then (i32.const 0x10000)) (else (i32.const 0))))
  (func (export "wasmpod_handle") (param $len i32) (result i64)
    (local $op i32) (local $n i32) (local $i i32) (local $r i32)
    (local.set $op (i32.load8_u (i32.const 0x10000)))
    (local.set $n (i32.load (i32.const 0x10004)))
    (memory.fill (i32.const 0x40000) (i32.const 97) (i32.const 0x100000))
    (if (i32.eqz (local.get $op))
      (then
        (i32.store8 (i32.const 0x30000) (i32.const 109)) ;; m
        (block $done (loop $next
          (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
          (i32.store8 (i32.const 0x30001) (i32.add (i32.const 65) (i32.rem_u (local.get $i) (i32.const 26))))
          (i32.store8 (i32.const 0x30002) (i32.add (i32.const 65) (i32.div_u (local.get $i) (i32.const 26))))
          (if (i32.ge_s (call $metric_define (i32.const 1) (i32.const 0x30000) (i32.const 3)
                                             (i32.const 0x40000) (i32.const 0x100000))
                        (i32.const 0))
            (then (local.set $r (i32.add (local.get $r) (i32.const 1)))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $next))))
      (else
        (block $done (loop $next
          (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
          (i32.store (i32.add (i32.const 0x140000) (i32.shl (local.get $i) (i32.const 3))) (i32.const 0x40000))
          (i32.store (i32.add (i32.const 0x140004) (i32.shl (local.get $i) (i32.const 3))) (i32.const 0x100000))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $next)))
        (local.set $r (call $fd_write (i32.const 1) (i32.const 0x140000) (local.get $n) (i32.const 0x30010)))))
    (i32.store (i32.const 0x20000) (local.get $r))
    (i64.or (i64.shl (i64.const 4) (i64.const 32)) (i64.const 0x20000))))
