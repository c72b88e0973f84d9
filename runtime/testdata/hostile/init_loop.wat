;; A native-ABI module whose _initialize loops forever: it must be cut at the load's deadline,
;; or when the load's context ends first.
(module
  (memory (export "memory") 2)
  (func (export "_initialize") (loop $l (br $l)))
  (func (export "wasmpod_abi_version") (result i32) (i32.const 1))
  (func (export "wasmpod_buffer") (param i32) (result i32) (i32.const 65536))
  (func (export "wasmpod_handle") (param $len i32) (result i64) (i64.const 0)))
