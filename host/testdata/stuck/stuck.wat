;; stuck is a hostile test guest for the supervisor: a handle-role module whose lifecycle
;; exports each spin forever (a loop the host can only cut at its deadline) when the module's
;; config has the key naming that export:
;;
;;   hang_start     wasmpod_start never returns
;;   hang_health    wasmpod_health never returns
;;   hang_tick      wasmpod_tick never returns
;;   hang_snapshot  wasmpod_snapshot never returns
;;   hang_stop      wasmpod_stop never returns
;;   sleep_health   wasmpod_health sleeps 40 seconds in WASI poll_oneoff (using no CPU: the
;;                  host wakes a sleeping guest when it cuts the call, unless it is trusted)
;;
;; Otherwise start, tick and stop return 0, health reports ready, snapshot returns an empty
;; state, and the handler echoes its input.
(module
  (import "wasmpod" "config_get" (func $config_get (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 1024) "hang_start")
  (data (i32.const 1040) "hang_health")
  (data (i32.const 1056) "hang_tick")
  (data (i32.const 1072) "hang_snapshot")
  (data (i32.const 1088) "hang_stop")
  (data (i32.const 1104) "sleep_health")

  ;; spins forever if the config has the key at ptr (len bytes)
  (func $maybe_hang (param $ptr i32) (param $len i32)
    (if (i32.ge_s (call $config_get (local.get $ptr) (local.get $len) (i32.const 0) (i32.const 0))
                  (i32.const 0))
      (then (loop $forever (br $forever)))))

  ;; sleeps 40s if the config has the key at ptr (len bytes): one relative clock subscription
  ;; (WASI preview 1 layout, 48 bytes at 2048), its event at 2112, the event count at 2160
  (func $maybe_sleep (param $ptr i32) (param $len i32)
    (if (i32.ge_s (call $config_get (local.get $ptr) (local.get $len) (i32.const 0) (i32.const 0))
                  (i32.const 0))
      (then
        (i64.store (i32.const 2048) (i64.const 0))            ;; userdata
        (i64.store (i32.const 2056) (i64.const 0))            ;; tag 0: clock
        (i32.store (i32.const 2064) (i32.const 1))            ;; clock id: monotonic
        (i64.store (i32.const 2072) (i64.const 40000000000))  ;; timeout: 40s, relative
        (i64.store (i32.const 2080) (i64.const 0))            ;; precision
        (i64.store (i32.const 2088) (i64.const 0))            ;; flags: relative
        (drop (call $poll_oneoff (i32.const 2048) (i32.const 2112) (i32.const 1) (i32.const 2160))))))

  (func (export "wasmpod_abi_version") (result i32) (i32.const 1))
  (func (export "wasmpod_buffer") (param $size i32) (result i32)
    (if (result i32) (i32.le_u (local.get $size) (i32.const 65536))
      (then (i32.const 65536)) (else (i32.const 0))))
  (func (export "wasmpod_handle") (param $len i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $len)) (i64.const 32))
            (i64.const 65536)))
  (func (export "wasmpod_start") (result i32)
    (call $maybe_hang (i32.const 1024) (i32.const 10))
    (i32.const 0))
  (func (export "wasmpod_health") (result i32)
    (call $maybe_hang (i32.const 1040) (i32.const 11))
    (call $maybe_sleep (i32.const 1104) (i32.const 12))
    (i32.const 0))
  (func (export "wasmpod_tick") (param $now i64) (result i32)
    (call $maybe_hang (i32.const 1056) (i32.const 9))
    (i32.const 0))
  (func (export "wasmpod_snapshot") (result i64)
    (call $maybe_hang (i32.const 1072) (i32.const 13))
    ;; an empty state at the buffer
    (i64.const 65536))
  (func (export "wasmpod_stop") (param $grace_ms i64) (result i32)
    (call $maybe_hang (i32.const 1088) (i32.const 9))
    (i32.const 0)))
