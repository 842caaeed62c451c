"""The training role: collect, datasets, Keras models, evaluation, TFLite export."""
