"""Supernode mode: another Jupyter server's contents and kernels, served through this one."""
