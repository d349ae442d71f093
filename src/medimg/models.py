"""Keras 3 model builders (channels-last): the two-input classifier and the U-Net
(one builder for 2-D and 3-D, chosen by the input rank)."""

from __future__ import annotations

from .errors import ConfigError

__all__ = ["grad_cam", "two_input_classifier", "unet"]


# ---------------------------------------------------------------------------------------
# U-Net (issue 6): one builder, 2-D or 3-D by input rank.
# ---------------------------------------------------------------------------------------


def unet(
    input_shape,
    n_classes: int,
    *,
    depth: int = 4,
    base_filters: int = 32,
    batch_norm: bool = True,
    deconvolution: bool = False,
    final_activation: str | None = "sigmoid",
    name: str | None = None,
):
    """A U-Net (Ronneberger et al. 2015; Çiçek et al. 2016 in 3-D), channels-last.

    The contracting path has ``depth`` levels of two 3x3(x3) convolutions (ReLU, batch
    normalisation optional) with the filters doubling per level, joined by 2x2(x2) max
    pooling; the expanding path up-samples (nearest-neighbour up-sampling, or a
    transposed convolution with ``deconvolution=True``), concatenates the matching
    contracting level and applies two convolutions; a 1x1(x1) convolution gives
    ``n_classes`` outputs. 2-D or 3-D is chosen by the rank of ``input_shape``.

    Parameters
    ----------
    input_shape : tuple of int or None
        ``(H, W, C)`` for 2-D, ``(x, y, z, C)`` for 3-D. Spatial sizes may be None (a
        fully convolutional model for sliding-window prediction); given sizes must be
        divisible by ``2 ** (depth - 1)``.
    n_classes : int
        Output channels: classes (softmax) or regions/masks (sigmoid).
    depth : int
        Resolution levels (``depth - 1`` poolings), at least 1.
    base_filters : int
        Filters of the first level; level ``i`` has ``base_filters * 2**i``.
    batch_norm : bool
        Batch normalisation after every convolution.
    deconvolution : bool
        Transposed convolutions instead of up-sampling in the expanding path.
    final_activation : {"sigmoid", "softmax", None}
        Output activation (None: logits). The output is float32 even under a
        mixed-precision policy, as losses need.
    name : str, optional
        Model name (default ``unet2d`` / ``unet3d``).

    Returns
    -------
    keras.Model
        Input ``(N, *input_shape)``, output ``(N, *spatial, n_classes)``.

    Raises
    ------
    ConfigError
        Wrong rank, sizes not divisible by ``2 ** (depth - 1)``, or bad settings.

    Examples
    --------
    >>> model = unet((32, 32, 16, 4), 3, depth=3, base_filters=8)   # doctest: +SKIP
    >>> model.output_shape                                           # doctest: +SKIP
    (None, 32, 32, 16, 3)
    """
    input_shape = tuple(input_shape)
    if len(input_shape) not in (3, 4):
        raise ConfigError(
            f"unet: input_shape {input_shape} must be (H, W, C) for 2-D or (x, y, z, C) "
            "for 3-D (channels last)")
    if input_shape[-1] is None or int(input_shape[-1]) < 1:
        raise ConfigError(f"unet: input_shape {input_shape} needs a known number of channels")
    if int(depth) < 1 or int(base_filters) < 1 or int(n_classes) < 1:
        raise ConfigError(
            f"unet: depth ({depth}), base_filters ({base_filters}) and n_classes "
            f"({n_classes}) must be positive integers")
    if final_activation not in ("sigmoid", "softmax", None):
        raise ConfigError(
            f"unet: final_activation must be 'sigmoid', 'softmax' or None, got {final_activation!r}")
    factor = 2 ** (depth - 1)
    bad = [s for s in input_shape[:-1] if s is not None and int(s) % factor]
    if bad:
        raise ConfigError(
            f"unet: spatial sizes {input_shape[:-1]} must be divisible by 2**(depth-1) = "
            f"{factor} (depth {depth}); change the patch shape or the depth")

    import keras
    from keras import layers

    three_d = len(input_shape) == 4
    conv = layers.Conv3D if three_d else layers.Conv2D
    pool = layers.MaxPooling3D if three_d else layers.MaxPooling2D
    upsample = layers.UpSampling3D if three_d else layers.UpSampling2D
    transpose = layers.Conv3DTranspose if three_d else layers.Conv2DTranspose

    def block(x, filters, prefix):
        for i in (1, 2):
            x = conv(filters, 3, padding="same", use_bias=not batch_norm,
                     kernel_initializer="he_normal", name=f"{prefix}_conv{i}")(x)
            if batch_norm:
                x = layers.BatchNormalization(name=f"{prefix}_bn{i}")(x)
            x = layers.Activation("relu", name=f"{prefix}_relu{i}")(x)
        return x

    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    skips = []
    for level in range(depth):
        x = block(x, base_filters * 2**level, f"down{level}")
        if level < depth - 1:
            skips.append(x)
            x = pool(2, name=f"down{level}_pool")(x)
    for level in reversed(range(depth - 1)):
        filters = base_filters * 2**level
        if deconvolution:
            x = transpose(filters, 2, strides=2, padding="same", name=f"up{level}_deconv")(x)
        else:
            x = upsample(2, name=f"up{level}_upsample")(x)
        x = layers.Concatenate(name=f"up{level}_concat")([x, skips[level]])
        x = block(x, filters, f"up{level}")
    x = conv(int(n_classes), 1, name="output_conv")(x)
    outputs = layers.Activation(final_activation or "linear", dtype="float32", name="output")(x)
    return keras.Model(inputs, outputs, name=name or ("unet3d" if three_d else "unet2d"))


# ---------------------------------------------------------------------------------------
# Two-input classifier (issue 5): image branch + tabular feature branch, one sigmoid.
# ---------------------------------------------------------------------------------------


def two_input_classifier(
    image_shape,
    n_features: int,
    *,
    filters=(16, 32, 64, 128),
    convs_per_block: int = 1,
    batch_norm: bool = True,
    batch_norm_momentum: float = 0.99,
    dropout: float = 0.25,
    dense_units: int = 64,
    feature_units: int = 16,
    learning_rate: float = 1e-3,
    compile: bool = True,
    name: str = "two_input_classifier",
):
    """A CNN over an image joined with a small dense branch over tabular features.

    The image branch has one block per entry of ``filters``: ``convs_per_block``
    3x3 convolutions (batch normalisation optional, then ReLU), 2x2 max pooling
    and dropout; global average pooling and a dense layer of ``dense_units``
    follow. The feature branch is one dense layer of ``feature_units`` (age
    bucket, view position, sex, ...). The two are concatenated and end in one
    sigmoid unit: the probability of the positive class. Compiled (unless
    ``compile=False``) with Adam, binary cross-entropy on probabilities (the
    loss that matches a sigmoid output), and AUC and accuracy metrics.

    Parameters
    ----------
    image_shape : tuple of int
        ``(H, W, C)``, channels last; float inputs (the RSNA pipeline feeds [0, 1]).
    n_features : int
        Length of the feature vector (0: image only, the feature input is still
        present with width 0 so that pipelines need not change).
    filters : sequence of int
        Filters per convolution block.
    convs_per_block : int
        Convolutions before each pooling.
    batch_norm : bool
        Batch normalisation after every convolution.
    batch_norm_momentum : float
        Momentum of its moving mean and variance, in [0, 1) (Keras' default 0.99
        averages over about 100 steps; on a small data set of ~10 steps per epoch
        those statistics lag the weights by epochs and the validation scores jump;
        0.9 follows them within an epoch).
    dropout : float
        Dropout rate after each block and in the head, in [0, 1).
    dense_units, feature_units : int
        Widths of the image head and of the feature branch.
    learning_rate : float
        Adam's learning rate.
    compile : bool
        Compile the model.
    name : str
        Model name.

    Returns
    -------
    keras.Model
        Inputs ``image`` ``(N, H, W, C)`` and ``features`` ``(N, n_features)``
        (pass them as a tuple ``(image, features)`` or a dict); output
        ``(N, 1)`` probabilities, float32.

    Raises
    ------
    ConfigError
        Wrong rank, non-positive sizes, or a dropout outside [0, 1).

    Examples
    --------
    >>> model = two_input_classifier((128, 128, 1), 12)   # doctest: +SKIP
    >>> model.output_shape                                # doctest: +SKIP
    (None, 1)
    """
    import keras
    from keras import layers

    image_shape = tuple(image_shape)
    if len(image_shape) != 3 or any(s is not None and int(s) < 1 for s in image_shape):
        raise ConfigError(f"two_input_classifier: image_shape {image_shape} must be "
                          "(H, W, C) with positive sizes (channels last)")
    filters = tuple(int(f) for f in filters)
    if not filters or min(filters) < 1:
        raise ConfigError(f"two_input_classifier: filters {filters} must be positive")
    if int(n_features) < 0 or int(convs_per_block) < 1:
        raise ConfigError("two_input_classifier: n_features must be >= 0 and "
                          "convs_per_block >= 1")
    if not 0.0 <= float(dropout) < 1.0:
        raise ConfigError(f"two_input_classifier: dropout {dropout} must be in [0, 1)")
    if not 0.0 <= float(batch_norm_momentum) < 1.0:
        raise ConfigError(f"two_input_classifier: batch_norm_momentum {batch_norm_momentum} "
                          "must be in [0, 1)")
    spatial = [s for s in image_shape[:2] if s is not None]
    if spatial and min(spatial) < 2 ** len(filters):
        raise ConfigError(f"two_input_classifier: {len(filters)} poolings need images of at "
                          f"least {2 ** len(filters)} pixels, got {image_shape}")

    image_in = keras.Input(shape=image_shape, name="image")
    features_in = keras.Input(shape=(int(n_features),), name="features")
    x = image_in
    for block, width in enumerate(filters, start=1):
        for conv in range(1, int(convs_per_block) + 1):
            x = layers.Conv2D(width, 3, padding="same", use_bias=not batch_norm,
                              name=f"block{block}_conv{conv}")(x)
            if batch_norm:
                x = layers.BatchNormalization(momentum=float(batch_norm_momentum),
                                              name=f"block{block}_bn{conv}")(x)
            x = layers.Activation("relu", name=f"block{block}_relu{conv}")(x)
        x = layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"block{block}_dropout")(x)
    x = layers.GlobalAveragePooling2D(name="image_pool")(x)
    x = layers.Dense(int(dense_units), activation="relu", name="image_dense")(x)
    if dropout:
        x = layers.Dropout(dropout, name="image_dropout")(x)
    merged = [x]
    if int(n_features) > 0:
        merged.append(layers.Dense(int(feature_units), activation="relu",
                                   name="feature_dense")(features_in))
    x = layers.Concatenate(name="concat")(merged) if len(merged) > 1 else merged[0]
    output = layers.Dense(1, activation="sigmoid", dtype="float32", name="probability")(x)
    model = keras.Model([image_in, features_in], output, name=name)
    if compile:
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=float(learning_rate)),
            loss=keras.losses.BinaryCrossentropy(),
            metrics=[keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")],
        )
    return model


# ---------------------------------------------------------------------------------------
# Grad-CAM (issue 13): where a classifier looked, for the figures of notebook 03.
# ---------------------------------------------------------------------------------------

#: Layers skipped when choosing Grad-CAM's layer: they only subsample or drop feature
#: maps, so the last convolution's activation before them is the better-resolved map.
_CAM_SKIPPED = ("Dropout", "SpatialDropout2D", "MaxPooling2D", "AveragePooling2D", "InputLayer",
                "GaussianNoise", "GaussianDropout")


def _grad_cam_layer(model, layer_name):
    if layer_name is not None:
        try:
            return model.get_layer(layer_name)
        except ValueError as error:
            raise ConfigError(f"grad_cam: model {model.name!r} has no layer {layer_name!r}") \
                from error
    for layer in reversed(model.layers):
        shape = getattr(layer, "output", None)
        shape = getattr(shape, "shape", None)
        if shape is not None and len(shape) == 4 and type(layer).__name__ not in _CAM_SKIPPED:
            return layer
    raise ConfigError(f"grad_cam: model {model.name!r} has no layer with a 4-D (N, H, W, C) "
                      "output to explain; pass layer_name")


def grad_cam(model, inputs, layer_name=None, *, class_index=0):
    """Grad-CAM heat maps (Selvaraju et al., 2017) of a Keras classifier.

    The gradient of the class score with respect to a convolutional layer's feature
    maps, averaged over space, weights those maps; the weighted sum, through a ReLU,
    is the heat map: where evidence *for* the class lies. The score is taken before
    a final sigmoid or softmax (the logit), so saturated probabilities do not make the
    gradients vanish. Works with the two-input classifier (image and features) and
    with single-input CNNs; TensorFlow backend.

    Parameters
    ----------
    model : keras.Model
        A functional (or built Sequential) model whose first 4-D input is the image.
    inputs : array-like, tuple/list of array-like, or dict
        What the model takes: the image batch ``(N, H, W, C)`` for a single-input
        model; ``(image, features)`` or ``{"image": ..., "features": ...}`` for the
        two-input classifier.
    layer_name : str, optional
        Layer whose feature maps are weighted; default the last layer with a 4-D output
        that is not a pooling or dropout layer (the last convolution block's activation).
    class_index : int
        Output unit explained (0 for the one sigmoid unit: evidence for the positive
        class).

    Returns
    -------
    numpy.ndarray, float32, shape (N, H, W)
        Heat maps resized (bilinear) to the image input's height and width, each
        divided by its maximum so it lies in [0, 1] (all zeros when no location
        supports the class).

    Raises
    ------
    ConfigError
        Unknown layer, no 4-D layer or image input, or ``class_index`` out of range.

    Examples
    --------
    >>> model = two_input_classifier((64, 64, 1), 3)          # doctest: +SKIP
    >>> maps = grad_cam(model, (images, features))           # doctest: +SKIP
    >>> maps.shape                                            # doctest: +SKIP
    (8, 64, 64)
    """
    import keras
    import numpy as np
    import tensorflow as tf

    layer = _grad_cam_layer(model, layer_name)
    last = model.layers[-1]
    activation = getattr(last, "activation", None)
    pre_activation = (isinstance(last, keras.layers.Dense | keras.layers.Activation)
                      and getattr(activation, "__name__", "") in ("sigmoid", "softmax"))
    score_tensor = last.input if pre_activation else model.outputs[0]
    explainer = keras.Model(model.inputs, [layer.output, score_tensor])

    def as_tensor(x):
        return tf.convert_to_tensor(np.asarray(x.numpy() if hasattr(x, "numpy") else x),
                                    dtype=tf.float32)

    if isinstance(inputs, dict):
        feed = {key: as_tensor(value) for key, value in inputs.items()}
        candidates = [feed[t.name] if t.name in feed else None for t in model.inputs]
        candidates = [c for c in candidates if c is not None] or list(feed.values())
    elif isinstance(inputs, list | tuple):
        feed = [as_tensor(value) for value in inputs]
        candidates = feed
    else:
        feed = [as_tensor(inputs)]
        candidates = feed
    image = next((c for c in candidates if len(c.shape) == 4), None)
    if image is None:
        raise ConfigError("grad_cam: no 4-D (N, H, W, C) image among the inputs")
    with tf.GradientTape() as tape:
        features, score = explainer(feed, training=False)
        score = tf.cast(score, tf.float32)
        if pre_activation and isinstance(last, keras.layers.Dense):
            score = tf.matmul(score, tf.cast(last.kernel, tf.float32))
            if last.bias is not None:
                score = score + tf.cast(last.bias, tf.float32)
        score = tf.reshape(score, (tf.shape(score)[0], -1))
        if not 0 <= int(class_index) < int(score.shape[-1]):
            raise ConfigError(f"grad_cam: class_index {class_index} is outside the model's "
                              f"{int(score.shape[-1])} outputs")
        target = score[:, int(class_index)]
    gradients = tf.cast(tape.gradient(target, features), tf.float32)
    features = tf.cast(features, tf.float32)
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))
    cam = tf.image.resize(cam[..., None], tuple(int(s) for s in image.shape[1:3]),
                          method="bilinear")[..., 0]
    peak = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
    cam = tf.where(peak > 0, cam / tf.where(peak > 0, peak, 1.0), 0.0)
    return cam.numpy().astype(np.float32)
