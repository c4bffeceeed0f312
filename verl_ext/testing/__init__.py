"""Offline builders for tests, the CPU demo and the GPU smoke: nothing here downloads anything."""
