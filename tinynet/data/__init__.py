"""Datasets on disk (Tiny ImageNet and a generated look-alike), decoding, and the tf.data pipeline."""
