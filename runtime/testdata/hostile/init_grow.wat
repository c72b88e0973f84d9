;; A native-ABI module whose _initialize grows its memory to 16,384 pages (1 GiB) and writes the
;; last byte: its instance image is as large as the memory limit allows.
(module
  (memory (export "memory") 2)
  (func (export "_initialize")
    (drop (memory.grow (i32.const 16382)))
    (i32.store8 (i32.const 1073741823) (i32.const 7)))
  (func (export "wasmpod_abi_version") (result i32) (i32.const 1))
  (func (export "wasmpod_buffer") (param i32) (result i32) (i32.const 65536))
  (func (export "wasmpod_handle") (param $len i32) (result i64) (i64.const 0)))
