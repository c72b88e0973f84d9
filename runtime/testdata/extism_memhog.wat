;; An Extism plugin that tries to hold more memory than its instance's limit, through both of
;; its instance's memories: its own (memory.grow) and Extism's kernel's (alloc, which grows the
;; kernel's memory). Its table of 65536 entries (512 KiB in wazero) counts against the limit too.
;;
;; Every function outputs two u64 (little endian): the plugin's memory in pages and how many
;; 32 KiB blocks the kernel allocated. The kernel's memory is the instance's pages less the
;; plugin's (its memory_bytes counts only what its allocator has claimed so far).
(module
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "store_u64" (func $store_u64 (param i64 i64)))
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
  (memory (export "memory") 1)
  (table 65536 funcref)

  ;; $grow grows the plugin's memory a page at a time until memory.grow fails.
  (func $grow
    (block $full
      (loop $more
        (br_if $full (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
        (br $more))))

  ;; $allocs allocates 32 KiB blocks through the kernel until alloc returns 0 or $max blocks are
  ;; allocated; returns how many it allocated.
  (func $allocs (param $max i64) (result i64)
    (local $n i64)
    (block $done
      (loop $more
        (br_if $done (i64.ge_u (local.get $n) (local.get $max)))
        (br_if $done (i64.eqz (call $alloc (i64.const 32768))))
        (local.set $n (i64.add (local.get $n) (i64.const 1)))
        (br $more)))
    (local.get $n))

  ;; $report outputs the record from a block allocated at the start of the call (when the
  ;; kernel still had room).
  (func $report (param $out i64) (param $blocks i64) (result i32)
    (call $store_u64 (local.get $out) (i64.extend_i32_u (memory.size)))
    (call $store_u64 (i64.add (local.get $out) (i64.const 8)) (local.get $blocks))
    (call $output_set (local.get $out) (i64.const 16))
    (i32.const 0))

  ;; hog: its own memory first, then the kernel's.
  (func (export "hog") (result i32)
    (local $out i64) (local $n i64)
    (local.set $out (call $alloc (i64.const 16)))
    (call $grow)
    (local.set $n (call $allocs (i64.const 1000000)))
    (call $report (local.get $out) (local.get $n)))

  ;; hog_kernel: the kernel's memory first, then its own.
  (func (export "hog_kernel") (result i32)
    (local $out i64) (local $n i64)
    (local.set $out (call $alloc (i64.const 16)))
    (local.set $n (call $allocs (i64.const 1000000)))
    (call $grow)
    (call $report (local.get $out) (local.get $n)))

  ;; fit: 8 blocks (256 KiB) through the kernel, well within its initial memory; fails with 2 if
  ;; one is refused.
  (func (export "fit") (result i32)
    (local $out i64) (local $n i64)
    (local.set $out (call $alloc (i64.const 16)))
    (local.set $n (call $allocs (i64.const 8)))
    (if (i64.ne (local.get $n) (i64.const 8)) (then (return (i32.const 2))))
    (call $report (local.get $out) (local.get $n))))
