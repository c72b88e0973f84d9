;; A native-ABI module for runtime tests. The first input byte selects the behaviour:
;; 0 unreachable, 1 out-of-bounds load, 2 integer divide by zero, 3 stack overflow,
;; 5 infinite loop, 6 memory.grow by input[1] pages (returns the i32 result),
;; 7 guest error 7 with message "boom", 8 an output pointer outside memory,
;; 9 an output longer than the host allows, 0xEE the rest of the input passed to the error
;; import, then unreachable (an SDK's panic); anything else echoes the input.
(module
  (import "wasmpod" "error" (func $error (param i32 i32)))
  (memory (export "memory") 2)
  (data (i32.const 1024) "boom")
  (func (export "wasmpod_abi_version") (result i32) (i32.const 1))
  (func (export "wasmpod_buffer") (param $size i32) (result i32)
    (if (result i32) (i32.le_u (local.get $size) (i32.const 65536))
      (then (i32.const 65536)) (else (i32.const 0))))
  (func $recurse (param i32) (result i32)
    (i32.add (call $recurse (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))
  (func (export "wasmpod_handle") (param $len i32) (result i64)
    (local $op i32)
    (local.set $op (i32.load8_u (i32.const 65536)))
    (if (i32.eq (local.get $op) (i32.const 0)) (then unreachable))
    (if (i32.eq (local.get $op) (i32.const 1))
      (then (drop (i32.load (i32.const 0xFFFFFFF0)))))
    (if (i32.eq (local.get $op) (i32.const 2))
      (then (drop (i32.div_s (i32.const 1) (i32.sub (local.get $len) (local.get $len))))))
    (if (i32.eq (local.get $op) (i32.const 3))
      (then (drop (call $recurse (i32.const 0)))))
    (if (i32.eq (local.get $op) (i32.const 5))
      (then (loop $spin (br $spin))))
    (if (i32.eq (local.get $op) (i32.const 6))
      (then
        (i32.store (i32.const 65536) (memory.grow (i32.load8_u (i32.const 65537))))
        (return (i64.or (i64.shl (i64.const 4) (i64.const 32)) (i64.const 65536)))))
    (if (i32.eq (local.get $op) (i32.const 7))
      (then (call $error (i32.const 1024) (i32.const 4)) (return (i64.const -7))))
    (if (i32.eq (local.get $op) (i32.const 8))
      (then (return (i64.or (i64.shl (i64.const 100) (i64.const 32)) (i64.const 0xFFFFFFF0)))))
    (if (i32.eq (local.get $op) (i32.const 0xEE))
      (then (call $error (i32.const 65537) (i32.sub (local.get $len) (i32.const 1))) unreachable))
    (if (i32.eq (local.get $op) (i32.const 9))
      (then (return (i64.shl (i64.const 0x7FFFFFFF) (i64.const 32)))))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $len)) (i64.const 32)) (i64.const 65536)))
  (func (export "wasmpod_leaf") (param $len i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $len)) (i64.const 32)) (i64.const 65536))))
