"""Feature extraction: audio decoding, model families and their encoders, pooling of every layer,
and the HDF5 store."""
