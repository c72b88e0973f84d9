//go:build wasip1

package net

import "unsafe"

//go:wasmimport wasmpod net_dial
func wasmpodNetDial(addrPtr unsafe.Pointer, addrLen uint32) int32

//go:wasmimport wasmpod net_write
func wasmpodNetWrite(h int32, ptr unsafe.Pointer, n uint32) int32

//go:wasmimport wasmpod net_read
func wasmpodNetRead(h int32, ptr unsafe.Pointer, capacity uint32) int32

//go:wasmimport wasmpod net_close
func wasmpodNetClose(h int32) int32

//go:wasmimport wasmpod net_error
func wasmpodNetError(ptr unsafe.Pointer, capacity uint32) int32

func hostDial(addr string) int32 {
	return wasmpodNetDial(unsafe.Pointer(unsafe.StringData(addr)), uint32(len(addr)))
}

func hostWrite(h int32, p []byte) int32 {
	return wasmpodNetWrite(h, unsafe.Pointer(unsafe.SliceData(p)), uint32(len(p)))
}

func hostRead(h int32, p []byte) int32 {
	return wasmpodNetRead(h, unsafe.Pointer(unsafe.SliceData(p)), uint32(len(p)))
}

func hostClose(h int32) int32 { return wasmpodNetClose(h) }

func hostError(b []byte) int32 {
	return wasmpodNetError(unsafe.Pointer(unsafe.SliceData(b)), uint32(len(b)))
}
