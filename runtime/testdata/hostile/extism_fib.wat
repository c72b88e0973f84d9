;; An Extism plugin whose function "run" computes fib(47) by naive recursion, with no loop
;; instruction: wazero's WithCloseOnContextDone checks only loop heads, so it never cut it.
(module
  (memory (export "memory") 1)
  (func $fib (param $n i32) (result i32)
    (if (result i32) (i32.lt_u (local.get $n) (i32.const 2))
      (then (local.get $n))
      (else (i32.add (call $fib (i32.sub (local.get $n) (i32.const 1)))
                     (call $fib (i32.sub (local.get $n) (i32.const 2)))))))
  (func (export "run") (result i32) (drop (call $fib (i32.const 47))) (i32.const 0))
  (func (export "ok") (result i32) (i32.const 0)))
