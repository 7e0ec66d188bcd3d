"""From config to Keras objects: the model's layers, the optimizer and its learning-rate schedule,
the loss, the augmentation layers. Each builder is generic over its option's registered schema."""
