"""Running notebook cells on a kernel and writing their outputs into the shared notebook."""
