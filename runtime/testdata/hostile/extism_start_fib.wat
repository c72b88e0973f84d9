;; An Extism plugin whose start section runs fib(48) by naive recursion: instantiation must be
;; cut at the deadline.
(module
  (memory (export "memory") 1)
  (global $r (mut i32) (i32.const 0))
  (func $fib (param $n i32) (result i32)
    (if (result i32) (i32.lt_u (local.get $n) (i32.const 2))
      (then (local.get $n))
      (else (i32.add (call $fib (i32.sub (local.get $n) (i32.const 1)))
                     (call $fib (i32.sub (local.get $n) (i32.const 2)))))))
  (func $init (global.set $r (call $fib (i32.const 48))))
  (start $init)
  (func (export "run") (result i32) (i32.const 0)))
