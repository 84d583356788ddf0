"""onnxgate plugin for JAX: JAX functions and Flax NNX modules, exported by jax2onnx.

The hook lives in ``onnxgate_jax.plugin``; ``onnxgate_jax.examples`` holds
small models to try it on.
"""
