//go:build wasip1

package election

import "unsafe"

//go:wasmimport wasmpod election
func wasmpodElection(op int32, namePtr unsafe.Pointer, nameLen uint32, token uint64, ttlMs int32, outPtr unsafe.Pointer, outCap uint32) uint64

//go:wasmimport wasmpod fenced_write
func wasmpodFencedWrite(namePtr unsafe.Pointer, nameLen uint32, token uint64, dataPtr unsafe.Pointer, dataLen uint32) int32

func hostElection(op int32, name string, token uint64, ttlMs int32, out []byte) uint64 {
	return wasmpodElection(op, unsafe.Pointer(unsafe.StringData(name)), uint32(len(name)), token, ttlMs,
		unsafe.Pointer(unsafe.SliceData(out)), uint32(len(out)))
}

func hostFencedWrite(name string, token uint64, data []byte) int32 {
	return wasmpodFencedWrite(unsafe.Pointer(unsafe.StringData(name)), uint32(len(name)), token,
		unsafe.Pointer(unsafe.SliceData(data)), uint32(len(data)))
}
