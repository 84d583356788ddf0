"""Small JAX models to convert: ``onnxgate convert onnxgate_jax.examples:mlp``."""

from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx


class MLP(nnx.Module):
    def __init__(self, features=(4, 16, 3), *, rngs: nnx.Rngs):
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(features, features[1:])])

    def __call__(self, x):
        for layer in self.layers[:-1]:
            x = nnx.gelu(layer(x))
        return self.layers[-1](x)


#: An NNX module instance (detected: an nnx.Module).
mlp = MLP(rngs=nnx.Rngs(0))


def apply(params, x):
    """A pure JAX function of (params, inputs): the usual JAX idiom."""
    return jnp.tanh(x @ params["w"] + params["b"])


_key = jax.random.PRNGKey(0)
#: A JAX callable with its params bound (``--framework jax``).
affine = partial(apply, {"w": jax.random.normal(_key, (4, 2)), "b": jnp.arange(2.0)})

#: A jitted function (detected: a jax.jit function).
softmax = jax.jit(lambda x: jax.nn.softmax(x * 2.0, axis=-1))


def two_inputs(x, y):
    """A plain function needing arguments is the model itself (``--framework jax``)."""
    return x * jnp.sin(y), x.sum(axis=-1)
