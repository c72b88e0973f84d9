;; Exercises every place a function index appears, so a renumbering mistake changes a result:
;; imports, direct calls, tail position, element segments (active and declarative), ref.func in
;; a global initializer, the start function, exports, and the name section (wat2wasm --debug-names).
(module
  (type $t (func (result i32)))
  (import "env" "imp" (func $imp (result i32)))
  (import "envg" "g" (global $ig i32))
  (table $tab 3 funcref)
  (elem (i32.const 0) $a $b)
  (elem declare func $c)
  (global $fref funcref (ref.func $c))
  (global $counter (mut i32) (i32.const 0))
  (memory (export "memory") 1)
  (func $a (export "a") (result i32) (i32.const 11))
  (func $b (result i32) (i32.const 22))
  (func $c (result i32) (i32.const 33))
  (func $start (i32.store (i32.const 0) (i32.const 7)))
  (start $start)
  (func (export "direct") (result i32) (call $b))
  (func (export "indirect") (param i32) (result i32) (call_indirect (type $t) (local.get 0)))
  (func (export "via_global") (result i32)
    (table.set $tab (i32.const 2) (global.get $fref))
    (call_indirect (type $t) (i32.const 2)))
  (func (export "imported") (result i32) (call $imp))
  (func (export "imported_global") (result i32) (global.get $ig))
  (func (export "started") (result i32) (i32.load (i32.const 0)))
  (func (export "sum") (param $n i32) (result i32) (local $s i32)
    (block $done
      (loop $l
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $s (i32.add (local.get $s) (local.get $n)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $l)))
    (local.get $s))
  (func (export "nested") (param $n i32) (result i32) (local $i i32) (local $j i32) (local $s i32)
    (loop $outer
      (local.set $j (i32.const 0))
      (loop $inner
        (local.set $s (i32.add (local.get $s) (i32.const 1)))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br_if $inner (i32.lt_u (local.get $j) (local.get $n))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $outer (i32.lt_u (local.get $i) (local.get $n))))
    (local.get $s)))
