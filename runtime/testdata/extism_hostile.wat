;; A hostile Extism plugin, written against the kernel's memory layout (extism kernel v1.7.0, as
;; embedded in extism go-sdk v1.7.1): the kernel's allocator root sits at offset 1 of its memory
;; and its blocks start at 65; a block is a 12-byte header (status u8, size u32 at +4, used u32 at
;; +8) followed by its data, so a call's first allocation (with an empty input) is at 77, its
;; header at 65; the root holds the allocator's position (u64 at 9) and the bytes it manages (u64
;; at 17). go-sdk's store_u64 writes anywhere in the kernel's memory, so a plugin can rewrite a
;; header: a size of 0xFFFFFFF4 makes the block its own successor, and every walk of the block
;; list loops forever: the kernel's length and free always walk it, its alloc once the bytes it
;; manages are used up (so the root is told they are).
;;
;; Every function takes no input (call with an empty input) and returns 0 unless said otherwise:
;;   ok           does nothing
;;   loop_length  corrupts the list, then calls the kernel's length itself (under the call)
;;   loop_log     ... then log_info of a block (a host function reads it)
;;   loop_config  ... then config_get
;;   loop_var_get ... then var_get
;;   loop_var_set ... then var_set
;;   loop_headers ... then http_headers (the host allocates for the headers)
;;   loop_http    ... then http_request
;;   loop_error   ... then error_set of a block and a trap: the host reads the error after it
;;   loop_error_return ... then error_set of a block and returns 1 (go-sdk reads the error)
;;   exit0        WASI proc_exit(0) after setting its output to "bye"
;;   error_big    sets an 8 MiB error message (zero bytes) and returns 1
;;   full_config  fills the kernel's memory until alloc fails, then asks config_get for the key
;;                "k"; outputs the offset config_get returned (u64, little endian)
;;   bad_position sets the allocator's position to 0xFFFFFF00 and returns 0: the kernel's reset,
;;                which go-sdk runs before the next call, zeroes that many bytes from 65 and traps
(module
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "length" (func $length (param i64) (result i64)))
  (import "extism:host/env" "store_u8" (func $store_u8 (param i64 i32)))
  (import "extism:host/env" "store_u64" (func $store_u64 (param i64 i64)))
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
  (import "extism:host/env" "error_set" (func $error_set (param i64)))
  (import "extism:host/env" "config_get" (func $config_get (param i64) (result i64)))
  (import "extism:host/env" "var_get" (func $var_get (param i64) (result i64)))
  (import "extism:host/env" "var_set" (func $var_set (param i64 i64)))
  (import "extism:host/env" "http_request" (func $http_request (param i64 i64) (result i64)))
  (import "extism:host/env" "http_headers" (func $http_headers (result i64)))
  (import "extism:host/env" "log_info" (func $log_info (param i64)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)

  ;; $corrupt allocates two blocks (at 77 and 105), writes "k" into the second, makes the first
  ;; its own successor and tells the root that its bytes are used up (position 41 + 64 bytes of
  ;; root); returns the second block, which no walk of the list now reaches.
  (func $corrupt (result i64)
    (local $b i64)
    (drop (call $alloc (i64.const 16)))
    (local.set $b (call $alloc (i64.const 1)))
    (call $store_u8 (local.get $b) (i32.const 107)) ;; "k"
    ;; the first block's size (u32 at 69) = 0xFFFFFFF4, its used (u32 at 73) = 16
    (call $store_u64 (i64.const 69) (i64.const 0x00000010FFFFFFF4))
    (call $store_u64 (i64.const 17) (i64.const 105))
    (local.get $b))

  (func (export "ok") (result i32) (i32.const 0))

  (func (export "loop_length") (result i32)
    (drop (call $length (call $corrupt)))
    (i32.const 0))

  (func (export "loop_log") (result i32)
    (call $log_info (call $corrupt))
    (i32.const 0))

  (func (export "loop_config") (result i32)
    (drop (call $config_get (call $corrupt)))
    (i32.const 0))

  (func (export "loop_var_get") (result i32)
    (drop (call $var_get (call $corrupt)))
    (i32.const 0))

  (func (export "loop_var_set") (result i32)
    (local $b i64)
    (local.set $b (call $corrupt))
    (call $var_set (local.get $b) (local.get $b))
    (i32.const 0))

  (func (export "loop_headers") (result i32)
    (drop (call $corrupt))
    (drop (call $http_headers))
    (i32.const 0))

  (func (export "loop_http") (result i32)
    (drop (call $http_request (call $corrupt) (i64.const 0)))
    (i32.const 0))

  (func (export "loop_error") (result i32)
    (call $error_set (call $corrupt))
    (unreachable))

  (func (export "loop_error_return") (result i32)
    (call $error_set (call $corrupt))
    (i32.const 1))

  (func (export "exit0") (result i32)
    (local $out i64)
    (local.set $out (call $alloc (i64.const 3)))
    (call $store_u8 (local.get $out) (i32.const 98)) ;; "bye"
    (call $store_u8 (i64.add (local.get $out) (i64.const 1)) (i32.const 121))
    (call $store_u8 (i64.add (local.get $out) (i64.const 2)) (i32.const 101))
    (call $output_set (local.get $out) (i64.const 3))
    (call $proc_exit (i32.const 0))
    (i32.const 0))

  (func (export "error_big") (result i32)
    (call $error_set (call $alloc (i64.const 0x800000)))
    (i32.const 1))

  (func (export "full_config") (result i32)
    (local $name i64) (local $out i64) (local $size i64)
    (local.set $name (call $alloc (i64.const 1)))
    (call $store_u8 (local.get $name) (i32.const 107)) ;; "k"
    (local.set $out (call $alloc (i64.const 8)))
    ;; allocate blocks of 64 KiB, then of half the size each time one fails, down to 1 byte
    (local.set $size (i64.const 65536))
    (block $full
      (loop $more
        (if (i64.eqz (call $alloc (local.get $size)))
          (then
            (br_if $full (i64.eq (local.get $size) (i64.const 1)))
            (local.set $size (i64.shr_u (local.get $size) (i64.const 1)))))
        (br $more)))
    (call $store_u64 (local.get $out) (call $config_get (local.get $name)))
    (call $output_set (local.get $out) (i64.const 8))
    (i32.const 0))

  (func (export "bad_position") (result i32)
    (drop (call $alloc (i64.const 16)))
    (call $store_u64 (i64.const 9) (i64.const 0xFFFFFF00))
    (i32.const 0)))
