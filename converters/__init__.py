"""Built-in converter plugins, one module per source framework.

Each module is registered under the ``onnxgate`` entry-point group in
setup.cfg, exactly as a third-party plugin would be, and imports its
framework only inside the spec's callables.
"""
