"""Fashion-MNIST (Xiao, Rasul, Vollgraf 2017): Zalando's article images, a drop-in replacement for
MNIST: 60,000 training and 10,000 test images, 28x28 grey, ten classes, the same IDX files."""

from mnistlab.data.registry import DATASETS, DatasetSpec

FASHION_MNIST = DATASETS.register(
    DatasetSpec(
        name="fashion_mnist",
        title="Fashion-MNIST",
        env_var="FASHION_MNIST_DIR",
        files={
            "x_train": "train-images-idx3-ubyte",
            "y_train": "train-labels-idx1-ubyte",
            "x_test": "t10k-images-idx3-ubyte",
            "y_test": "t10k-labels-idx1-ubyte",
        },
        # SHA-256 of the four .gz files as published (github.com/zalandoresearch/fashion-mnist; the same
        # sums are in TensorFlow Datasets' and torchvision's checksum lists)
        checksums={
            "train-images-idx3-ubyte": "08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc",
            "train-labels-idx1-ubyte": "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc",
            "t10k-images-idx3-ubyte": "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229",
            "t10k-labels-idx1-ubyte": "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf",
        },
        checksums_of="gzip",
        class_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        label_word="classes",
        image_shape=(28, 28),
        keras_dataset="fashion_mnist",
        keras_cache="datasets/fashion-mnist",
    )
)
