"""Step 1 of the data path: the rectified-convolution model in PyTorch.

* :mod:`.scale`      the rectification factor ``kh*kw / v[h, w]`` (or ``1 / v``), ``Tensor[Ho, Wo]``.
* :mod:`.layer`      :class:`RFConv2d`, a ``Conv2d`` whose output is multiplied by that factor.
* :mod:`.convert`    ``rectify_model`` (plain convs -> RFConv2d) and ``from_official``.
* :mod:`.compat`     the ``rfconv`` import shim for models written against the official package.
* :mod:`.checkpoint` state dicts loaded with ``weights_only=True`` (or from ``.safetensors``), wrappers
                     and mismatches explained.
* :mod:`.factory`    ``package.module:factory`` models, imported from the current directory first, with
                     keyword arguments.
* :mod:`.registry`   the paper's models by name, seeded weights and calibrated BatchNorm.

Nothing here imports a later step.
"""
