;; Reports what the WASI sandbox grants. The handler writes, at 1024:
;;   [0:4]   number of environment variables (environ_sizes_get)
;;   [4:8]   errno of fd_prestat_get(3): 0 when a directory is mounted, 8 (EBADF) when none is
;;   [8:12]  errno of random_get(16 bytes at 2048)
;;   [12:16] errno of clock_time_get(realtime)
;;   [16:24] the realtime clock value
;;   [24:40] the random bytes
(module
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $env (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $rand (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (memory (export "memory") 2)
  (func (export "wasmpod_abi_version") (result i32) (i32.const 1))
  (func (export "wasmpod_buffer") (param i32) (result i32) (i32.const 65536))
  (func (export "wasmpod_handle") (param $len i32) (result i64)
    (drop (call $env (i32.const 1024) (i32.const 3000)))
    (i32.store (i32.const 1028) (call $prestat (i32.const 3) (i32.const 3008)))
    (i32.store (i32.const 1032) (call $rand (i32.const 2048) (i32.const 16)))
    (i32.store (i32.const 1036) (call $clock (i32.const 0) (i64.const 1) (i32.const 1040)))
    (memory.copy (i32.const 1048) (i32.const 2048) (i32.const 16))
    (i64.or (i64.shl (i64.const 40) (i64.const 32)) (i64.const 1024))))
