"""What every fmnist-* command shares: errors (errors), the class names (labels), atomic file
writes (fileio), click options and error handling (cli: command modules only), C++ log capture
(nativelog), the machine's CPU and cores (machine), the model's input scaling (pixels) and the
confusion matrix (scores).

Standard library and numpy only, except cli (click); importing this package loads nothing.
"""
