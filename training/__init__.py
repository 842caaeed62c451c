"""The training role: lab, collect, datasets, Keras models, evaluation, TFLite export."""
