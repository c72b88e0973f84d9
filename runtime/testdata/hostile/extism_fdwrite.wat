;; An Extism plugin whose function "run" makes one WASI fd_write to stdout of 200,000 buffers,
;; each the same 1 MiB of 'a' without a newline; "ok" does nothing.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  ;; 0x10000-0x110000 data, 0x110000 on: the iovecs (1.6 MB).
  (memory (export "memory") 46)
  (func (export "run") (result i32) (local $i i32)
    (memory.fill (i32.const 0x10000) (i32.const 97) (i32.const 0x100000))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (i32.const 200000)))
      (i32.store (i32.add (i32.const 0x110000) (i32.shl (local.get $i) (i32.const 3))) (i32.const 0x10000))
      (i32.store (i32.add (i32.const 0x110004) (i32.shl (local.get $i) (i32.const 3))) (i32.const 0x100000))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (drop (call $fd_write (i32.const 1) (i32.const 0x110000) (i32.const 200000) (i32.const 0x100)))
    (i32.const 0))
  (func (export "ok") (result i32) (i32.const 0)))
