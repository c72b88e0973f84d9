;; A native-ABI module whose start section runs fib(48), naive recursion with no loop
;; instruction (minutes of work): it must be cut at the load's deadline.
(module
  (memory (export "memory") 2)
  (global $r (mut i32) (i32.const 0))
  (func $fib (param $n i32) (result i32)
    (if (result i32) (i32.lt_u (local.get $n) (i32.const 2))
      (then (local.get $n))
      (else (i32.add (call $fib (i32.sub (local.get $n) (i32.const 1)))
                     (call $fib (i32.sub (local.get $n) (i32.const 2)))))))
  (func $init (global.set $r (call $fib (i32.const 48))))
  (start $init)
  (func (export "wasmpod_abi_version") (result i32) (i32.const 1))
  (func (export "wasmpod_buffer") (param i32) (result i32) (i32.const 65536))
  (func (export "wasmpod_handle") (param $len i32) (result i64) (i64.const 0)))
