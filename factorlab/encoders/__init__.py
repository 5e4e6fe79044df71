"""Built-in encoders (shared trunks: images in [0, 1] -> feature map).

Importing this package is cheap: facenet-pytorch and timm are imported only when their encoder is built.
"""

from __future__ import annotations

from factorlab.encoders import facenet, small_cnn, timm_encoder

KIND = "encoders"
PARTS = [*facenet.PARTS, *timm_encoder.PARTS, *small_cnn.PARTS]

__all__ = ["KIND", "PARTS"]
