//go:build wasip1

package pod

import "unsafe"

//go:wasmimport wasmpod call
func wasmpodCall(targetPtr unsafe.Pointer, targetLen uint32, inPtr unsafe.Pointer, inLen uint32) int32

//go:wasmimport wasmpod call_result
func wasmpodCallResult(bufPtr unsafe.Pointer, bufCap uint32) int32

func hostCall(target string, in []byte) int32 {
	return wasmpodCall(unsafe.Pointer(unsafe.StringData(target)), uint32(len(target)),
		unsafe.Pointer(unsafe.SliceData(in)), uint32(len(in)))
}

func hostCallResult(b []byte) int32 {
	return wasmpodCallResult(unsafe.Pointer(unsafe.SliceData(b)), uint32(len(b)))
}
