;; A WASI command that opens files through both of its mounts and keeps every descriptor: the
;; input "f" in /in (preopen fd 3) read-only, until an error or 4,000, then "f" in /out
;; (preopen fd 4), created on the first open, until an error or 4,000. It exits with
;; in*10000 + out, so the host sees how many each mount gave it.
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "f")
  ;; open_all opens "f" below fd with oflags and rights until path_open fails or 4,000 are open.
  (func $open_all (param $fd i32) (param $oflags i32) (param $rights i64) (result i32)
    (local $n i32)
    (block $stop
      (loop $next
        (br_if $stop (i32.ge_u (local.get $n) (i32.const 4000)))
        ;; dirflags 1: follow symlinks; the new descriptor goes to 8 and is never closed
        (br_if $stop (call $path_open (local.get $fd) (i32.const 1) (i32.const 16) (i32.const 1)
          (local.get $oflags) (local.get $rights) (i64.const 0) (i32.const 0) (i32.const 8)))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $next)))
    (local.get $n))
  (func (export "_start")
    (local $in i32)
    ;; rights FD_READ (1<<1); then O_CREAT (1) with FD_READ|FD_WRITE (1<<1 | 1<<6)
    (local.set $in (call $open_all (i32.const 3) (i32.const 0) (i64.const 2)))
    (call $proc_exit (i32.add (i32.mul (local.get $in) (i32.const 10000))
      (call $open_all (i32.const 4) (i32.const 1) (i64.const 66))))))
