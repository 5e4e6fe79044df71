"""Built-in encoders (shared trunks: images in [0, 1] -> feature map), registered by `factorlab.builtins.encoders`.

facenet-pytorch and timm are imported only when their encoder is built.
"""
