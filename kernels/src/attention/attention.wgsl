// (kernels of this family: not written yet; the op runs as its decomposition)
