//go:build wasip1

package core

import "unsafe"

//go:wasmimport wasmpod log
func wasmpodLog(level int32, ptr unsafe.Pointer, n uint32)

//go:wasmimport wasmpod error
func wasmpodError(ptr unsafe.Pointer, n uint32)

//go:wasmimport wasmpod config_get
func wasmpodConfigGet(keyPtr unsafe.Pointer, keyLen uint32, bufPtr unsafe.Pointer, bufCap uint32) int32

//go:wasmimport wasmpod metric_define
func wasmpodMetricDefine(kind int32, namePtr unsafe.Pointer, nameLen uint32, helpPtr unsafe.Pointer, helpLen uint32) int32

//go:wasmimport wasmpod metric_record
func wasmpodMetricRecord(id int32, value float64)

//go:wasmimport wasmpod scale
func wasmpodScale(delta int32) int32

func strPtr(s string) unsafe.Pointer { return unsafe.Pointer(unsafe.StringData(s)) }

func hostLog(level int32, msg string) { wasmpodLog(level, strPtr(msg), uint32(len(msg))) }

func hostError(msg string) { wasmpodError(strPtr(msg), uint32(len(msg))) }

func hostConfigGet(key string, b []byte) int32 {
	return wasmpodConfigGet(strPtr(key), uint32(len(key)), unsafe.Pointer(unsafe.SliceData(b)), uint32(len(b)))
}

func hostMetricDefine(kind int32, name, help string) int32 {
	return wasmpodMetricDefine(kind, strPtr(name), uint32(len(name)), strPtr(help), uint32(len(help)))
}

func hostMetricRecord(id int32, value float64) { wasmpodMetricRecord(id, value) }

func hostScale(delta int32) int32 { return wasmpodScale(delta) }
