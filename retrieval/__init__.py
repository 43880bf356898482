"""Learning and search: dataset readers, GREM, PAFA and the 3D adapter, losses, training, faiss, evaluation."""
