package runtime

import "context"

// UseImageInstance replaces a created module's first instance (the one whose initialisation
// made the image) with one made from the image, so tests exercise image-made instances. It
// reports whether the module has an image.
func UseImageInstance(m *Module) (bool, error) {
	m.PrepareImage()
	if m.img.Load() == nil || m.State() != StateCreated {
		return false, nil
	}
	s := &m.pool.slots[0]
	if !s.move(slotIdle, slotBusy, 0) {
		return false, nil
	}
	inst, err := m.newInstance(context.Background())
	if err != nil {
		s.set(slotIdle, 0)
		return false, err
	}
	s.inst.Swap(inst).close(context.Background())
	s.set(slotIdle, 0)
	return true, nil
}
