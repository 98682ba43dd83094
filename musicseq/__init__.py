"""musicseq: music generation from ABC notation with Keras 3 sequence models.

``import musicseq`` is light: TensorFlow is imported only when a model is touched.
"""

__version__ = "0.1.0"
