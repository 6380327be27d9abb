"""The wire formats: y-websocket sync and awareness, Jupyter RAW messages, lib0 values.

Pure functions over bytes; nothing here does I/O or knows about rooms or sockets.
"""
