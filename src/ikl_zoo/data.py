"""CIFAR-10/100 in torchvision's layout, RobustBench's test protocol, and the real images foolbox ships.

Real CIFAR goes through torchvision, md5 checks included. A folder that ikl-zoo wrote itself (the sample of
20 real test images, or arrays a caller hands to :func:`write_cifar_dir`) carries a marker file; its batches
cannot match torchvision's md5 sums, so it is read by a reader that skips that check and unpickles with an
allow-list of numpy types only.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.datasets import CIFAR10, CIFAR100
from torchvision.datasets.utils import check_integrity

from ikl_zoo.atomic import atomic_path, write_json_atomic
from ikl_zoo.errors import DataError, DatasetNotFoundError

MARKER_FILENAME = "ikl-zoo-data.json"
"""Written inside ``cifar-10-batches-py/`` or ``cifar-100-python/`` by :func:`write_cifar_dir`."""
SAMPLE_SOURCE = "foolbox sample (test 0-19)"
"""The marker's ``source`` for the folder ``ikl-zoo sample-data`` writes."""
_ROW_BYTES = 3 * 32 * 32

_TORCHVISION_CLASS = {"cifar10": CIFAR10, "cifar100": CIFAR100}
_DISPLAY_NAME = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle", "bowl",
    "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle", "chair",
    "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur", "dolphin",
    "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard", "lamp",
    "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck",
    "pine_tree", "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television",
    "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf",
    "woman", "worm",
)
_CLASSES = {"cifar10": CIFAR10_CLASSES, "cifar100": CIFAR100_CLASSES}

Split = tuple[np.ndarray, "np.ndarray | list[int]"]
"""Images as uint8 NHWC (N, 32, 32, 3) and their integer labels."""


def _check_dataset(dataset: str) -> None:
    if dataset not in _TORCHVISION_CLASS:
        raise DatasetNotFoundError(f"unknown dataset {dataset!r}: choose cifar10 or cifar100")


def _base_folder(dataset: str) -> str:
    return _TORCHVISION_CLASS[dataset].base_folder


def _split_files(dataset: str, train: bool) -> list[str]:
    tv = _TORCHVISION_CLASS[dataset]
    return [name for name, _ in (tv.train_list if train else tv.test_list)]


def _layout_hint(dataset: str, root: Path, *, train: bool) -> str:
    """Where the files go; the sample folder only for the test split, since it holds no training images."""
    tv = _TORCHVISION_CLASS[dataset]
    files = ", ".join(name for name, _ in tv.train_list + tv.test_list) + f", {tv.meta['filename']}"
    hint = f"put the folder {tv.base_folder}/ ({files}, as extracted from {tv.filename}) in {root}"
    if train:
        return hint
    return f"{hint}, or run `ikl-zoo sample-data --out {root}` for the 20 real test images foolbox ships"


class MarkedCIFAR10(CIFAR10):
    """A CIFAR folder written by ikl-zoo: same layout and item format as torchvision's, no md5 check."""

    dataset_name = "cifar10"

    def __init__(
        self,
        root: str | os.PathLike[str],
        train: bool = True,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
    ) -> None:
        # Skip CIFAR10.__init__ (md5 checks); VisionDataset sets root and the transforms.
        super(CIFAR10, self).__init__(root, transform=transform, target_transform=target_transform)
        self.train = train
        self.data, self.targets, self.classes = _read_marked_split(self.dataset_name, Path(self.root), train)
        self.class_to_idx = {name: index for index, name in enumerate(self.classes)}


class MarkedCIFAR100(MarkedCIFAR10, CIFAR100):
    dataset_name = "cifar100"


_MARKED_CLASS = {"cifar10": MarkedCIFAR10, "cifar100": MarkedCIFAR100}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings and numpy arrays; refuses every other global (no code execution)."""

    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _safe_unpickle(path: Path, fix: str) -> dict:
    """The dict a CIFAR pickle holds; anything else (missing, damaged, foreign objects) is a DataError."""
    try:
        with open(path, "rb") as handle:
            entry = _NumpyOnlyUnpickler(handle, encoding="latin1").load()
    except OSError as error:
        raise DataError(f"cannot read {path} ({error.strerror or _one_line(error)}): {fix}") from None
    except Exception as error:  # whatever a damaged or foreign pickle raises, it is not a CIFAR batch
        raise DataError(f"{path} is not a readable CIFAR batch ({_one_line(error)}): {fix}") from None
    if not isinstance(entry, dict):
        raise DataError(f"{path} holds a pickled {type(entry).__name__}, not a CIFAR batch (a dict): {fix}")
    return entry


def _rewrite_hint(root: Path, marker: dict | None) -> str:
    if marker is not None and marker.get("source") != SAMPLE_SOURCE:
        return f"write the folder again with write_cifar_dir, or use `ikl-zoo sample-data --out {root}`"
    return f"write the folder again with `ikl-zoo sample-data --out {root}`"


def _read_marked_split(dataset: str, root: Path, train: bool) -> tuple[np.ndarray, list[int], list[str]]:
    """Images (N, 32, 32, 3), labels and class names of an ikl-zoo folder, each file checked on the way."""
    folder = root / _base_folder(dataset)
    fix = _rewrite_hint(root, _marker(root, dataset))
    label_key = "labels" if dataset == "cifar10" else "fine_labels"
    n_classes = len(_CLASSES[dataset])
    batches, targets = [], []
    for name in _split_files(dataset, train):
        path = folder / name
        entry = _safe_unpickle(path, fix)
        data = entry.get("data")
        if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
                and data.shape[1] == _ROW_BYTES):
            found = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
            raise DataError(f"{path}: 'data' is {found}, not uint8 rows of {_ROW_BYTES} bytes "
                            f"(N, 3 x 32 x 32): {fix}")
        labels = np.asarray(entry.get(label_key, []))
        valid = labels.shape == (len(data),) and (
            not labels.size
            or (np.issubdtype(labels.dtype, np.integer) and labels.min() >= 0 and labels.max() < n_classes)
        )
        if not valid:
            raise DataError(f"{path}: {label_key!r} must be {len(data)} class indices in "
                            f"[0, {n_classes - 1}], found {labels.size} values: {fix}")
        batches.append(data)
        targets.extend(int(label) for label in labels)
    meta = _TORCHVISION_CLASS[dataset].meta
    path = folder / meta["filename"]
    classes = _safe_unpickle(path, fix).get(meta["key"])
    if not (isinstance(classes, list) and len(classes) == n_classes
            and all(isinstance(name, str) for name in classes)):
        raise DataError(f"{path}: {meta['key']!r} must list the {n_classes} class names: {fix}")
    images = np.vstack(batches).reshape(-1, 3, 32, 32).transpose((0, 2, 3, 1))
    return images, targets, classes


def _marker(root: Path, dataset: str) -> dict | None:
    """The marker of an ikl-zoo folder; None for a folder without one (real CIFAR, or nothing yet)."""
    path = root / _base_folder(dataset) / MARKER_FILENAME
    if not path.is_file():
        return None
    fix = (f"write the folder again with `ikl-zoo sample-data --out {root}`, or delete {path.name} if the "
           f"folder holds the real {_DISPLAY_NAME[dataset]}")
    try:
        marker = json.loads(path.read_text())
    except OSError as error:
        raise DataError(f"cannot read {path} ({error.strerror or _one_line(error)}): {fix}") from None
    except ValueError:
        raise DataError(f"{path} is not valid JSON: {fix}") from None
    if not isinstance(marker, dict):
        raise DataError(f"{path} holds a JSON {type(marker).__name__}, not ikl-zoo's marker (an object): "
                        f"{fix}")
    return marker


def cifar_dataset(
    dataset: str,
    *,
    data_dir: str | os.PathLike[str],
    train: bool,
    transform: Callable | None = None,
    download: bool = True,
) -> torch.utils.data.Dataset:
    """CIFAR-10/100 from ``data_dir`` in torchvision's layout (a ``torchvision.datasets.CIFAR10`` instance).

    Real CIFAR is md5-checked by torchvision and downloaded when missing and ``download`` is set; a folder
    written by :func:`write_cifar_dir` is read as is. Missing data raises :class:`DatasetNotFoundError`
    saying which files to put where.
    """
    _check_dataset(dataset)
    root = Path(data_dir).expanduser()
    name = _DISPLAY_NAME[dataset]
    split = "training" if train else "test"
    marker = _marker(root, dataset)
    if marker is not None:
        folder = root / _base_folder(dataset)
        missing = [f for f in _split_files(dataset, train) if not (folder / f).is_file()]
        written = marker.get("splits")
        if missing and isinstance(written, dict) and ("train" if train else "test") in written:
            raise DataError(f"{folder} lost its {split} split ({', '.join(missing)} missing or not a file): "
                            f"{_rewrite_hint(root, marker)}")
        if missing:
            raise DatasetNotFoundError(
                f"{folder} was written by ikl-zoo ({marker.get('source', 'arrays')}) without the {split} "
                f"split ({', '.join(missing)} missing): put the real {name} there or use another --data-dir"
            )
        return _MARKED_CLASS[dataset](root, train=train, transform=transform)

    tv_class = _TORCHVISION_CLASS[dataset]
    try:
        return tv_class(root, train=train, transform=transform, download=download)
    except (OSError, RuntimeError) as error:
        folder = root / tv_class.base_folder
        expected = [n for n, _ in tv_class.train_list + tv_class.test_list] + [tv_class.meta["filename"]]
        missing = [n for n in expected if not (folder / n).is_file()]
        if folder.is_dir() and not missing:
            batches = tv_class.train_list + tv_class.test_list
            corrupted = ", ".join(n for n, md5 in batches if not check_integrity(folder / n, md5)) or "meta"
            raise DatasetNotFoundError(
                f"{name} in {folder} does not match torchvision's md5 sums ({corrupted}): replace those "
                f"files from {tv_class.filename}, or delete the folder so it is downloaded again"
            ) from None
        reason = f"download failed: {_one_line(error)}" if download else "download disabled"
        hint = _layout_hint(dataset, root, train=train)
        raise DatasetNotFoundError(f"{name} not found in {root} ({reason}): {hint}") from None


def is_official_cifar(dataset: str, *, data_dir: str | os.PathLike[str]) -> bool:
    """Whether ``data_dir`` holds torchvision's md5-checked CIFAR rather than a folder ikl-zoo wrote: only
    there is a measurement on the images a published figure was measured on."""
    _check_dataset(dataset)
    return _marker(Path(data_dir).expanduser(), dataset) is None


def data_source(dataset: str, *, data_dir: str | os.PathLike[str]) -> str:
    """What a data dir holds, for records: torchvision's md5-checked CIFAR, or a folder ikl-zoo wrote."""
    _check_dataset(dataset)
    marker = _marker(Path(data_dir).expanduser(), dataset)
    if marker is None:
        return f"{_DISPLAY_NAME[dataset]} (torchvision, md5-checked)"
    return f"{_DISPLAY_NAME[dataset]} folder written by ikl-zoo: {marker.get('source', 'arrays')}"


def load_test_examples(
    dataset: str, *, data_dir: str | os.PathLike[str], n_examples: int | None = None, download: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """RobustBench's protocol: the first ``n_examples`` test images, in order, ``ToTensor()`` only.

    Returns float32 images (N, 3, 32, 32) in [0, 1] and int64 labels. Asking for more images than the
    folder holds is an error rather than a silently smaller evaluation.
    """
    test_set = cifar_dataset(dataset, data_dir=data_dir, train=False, download=download)
    available = len(test_set)
    if n_examples is None:
        n_examples = available
    if n_examples < 1:
        raise DatasetNotFoundError(f"n_examples must be at least 1, got {n_examples}")
    if n_examples > available:
        raise DatasetNotFoundError(
            f"asked for {n_examples} {_DISPLAY_NAME[dataset]} test images but {data_dir} holds {available}: "
            f"pass --n-examples {available} or point --data-dir at the full test set"
        )
    images = np.ascontiguousarray(test_set.data[:n_examples])
    # Exactly torchvision's ToTensor on a uint8 HWC image: CHW float32 divided by 255.
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(torch.float32).div(255)
    y = torch.as_tensor(test_set.targets[:n_examples], dtype=torch.int64)
    return x, y


def write_cifar_dir(
    root: str | os.PathLike[str],
    *,
    dataset: str,
    test: Split | None = None,
    train: Split | None = None,
    source: str = "arrays",
) -> Path:
    """Write images in torchvision's CIFAR pickle layout under ``root``, with ikl-zoo's marker file.

    CIFAR-10: ``cifar-10-batches-py/`` with ``data_batch_1..5``, ``test_batch``, ``batches.meta``;
    CIFAR-100: ``cifar-100-python/`` with ``train``, ``test``, ``meta``. Returns ``root``. A folder holding
    CIFAR files that ikl-zoo did not write (the real dataset) is refused rather than overwritten.
    """
    _check_dataset(dataset)
    if test is None and train is None:
        raise ValueError("write_cifar_dir needs a test split, a train split, or both")
    classes = _CLASSES[dataset]
    splits = {name: _validated_split(split, name, len(classes))
              for name, split in (("test", test), ("train", train)) if split is not None}
    root = Path(root).expanduser()
    _refuse_foreign_cifar(root, dataset)
    folder = root / _base_folder(dataset)
    try:
        previous = _marker(root, dataset) or {}
    except DataError:  # a damaged marker of ikl-zoo's own folder: writing the folder repairs it
        previous = {}
    written = previous.get("splits")
    counts = dict(written) if isinstance(written, dict) else {}
    label_key = "labels" if dataset == "cifar10" else "fine_labels"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for split_name, (images, labels) in splits.items():
            counts[split_name] = len(labels)
            files = _split_files(dataset, train=split_name == "train")
            chunks = np.array_split(np.arange(len(labels)), len(files))
            for number, (name, indices) in enumerate(zip(files, chunks, strict=True), start=1):
                rows = images[indices].transpose(0, 3, 1, 2).reshape(len(indices), -1)
                entry = {
                    "batch_label": f"{split_name} batch {number} of {len(files)}",
                    label_key: [int(label) for label in labels[indices]],
                    "data": np.ascontiguousarray(rows),  # torchvision reads rows of 3072 bytes, CHW
                    "filenames": [f"{split_name}_{int(i):05d}.png" for i in indices],
                }
                _write_pickle(folder / name, entry)
        meta = _TORCHVISION_CLASS[dataset].meta
        _write_pickle(folder / meta["filename"], {meta["key"]: list(classes)})
        write_json_atomic(
            folder / MARKER_FILENAME,
            {"written_by": "ikl-zoo", "dataset": dataset, "source": source, "splits": counts},
        )
    except OSError as error:
        raise DataError(
            f"cannot write {folder} ({error.strerror or _one_line(error)}): choose a writable folder (--out)"
        ) from None
    return root


def _refuse_foreign_cifar(root: str | os.PathLike[str], dataset: str) -> None:
    """Raise :class:`DataError` when ``root`` holds CIFAR files without ikl-zoo's marker: the real dataset,
    whose test set writing there would replace (and whose md5 checks the marker would then switch off)."""
    folder = Path(root).expanduser() / _base_folder(dataset)
    if (folder / MARKER_FILENAME).exists():
        return
    tv = _TORCHVISION_CLASS[dataset]
    names = [name for name, _ in tv.train_list + tv.test_list] + [tv.meta["filename"]]
    found = [name for name in names if (folder / name).exists()]
    if found:
        raise DataError(
            f"{folder} holds {_DISPLAY_NAME[dataset]} files that ikl-zoo did not write ({', '.join(found)}): "
            "writing there would replace them; choose another folder (--out)"
        )


def _validated_split(split: Split, name: str, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = np.asarray(split[0]), np.asarray(split[1])
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise ValueError(f"{name} images must be uint8 (N, 32, 32, 3), got {images.dtype} {images.shape}")
    if labels.shape != (len(images),):
        raise ValueError(f"{name} labels must have shape ({len(images)},), got {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"{name} labels must lie in [0, {n_classes - 1}]")
    return images, labels.astype(np.int64)


def _write_pickle(path: Path, obj: Any) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        pickle.dump(obj, handle, protocol=4)


def _foolbox_data_dir() -> Path:
    spec = importlib.util.find_spec("foolbox")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotFoundError("foolbox is not installed: `pip install foolbox` (it ships the images)")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def foolbox_sample(dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """The real CIFAR test images foolbox ships (test indices 0-19): uint8 NHWC images and int64 labels."""
    _check_dataset(dataset)
    from PIL import Image

    pattern = re.compile(rf"^{dataset}_(\d+)_(\d+)\.png$")
    found = []
    for path in _foolbox_data_dir().glob(f"{dataset}_*.png"):
        match = pattern.match(path.name)
        if match:
            found.append((int(match.group(1)), int(match.group(2)), path))
    if not found:
        raise DatasetNotFoundError(f"no {dataset} images in {_foolbox_data_dir()}: reinstall foolbox")
    found.sort()
    indices = [index for index, _, _ in found]
    if indices != list(range(len(found))):
        raise DatasetNotFoundError(f"foolbox's {dataset} images are not test indices 0..{len(found) - 1}")
    images = np.stack([np.asarray(Image.open(path).convert("RGB"), dtype=np.uint8) for _, _, path in found])
    labels = np.array([label for _, label, _ in found], dtype=np.int64)
    return images, labels


def write_sample_data_dir(
    root: str | os.PathLike[str], *, datasets: tuple[str, ...] = ("cifar10", "cifar100")
) -> Path:
    """Write foolbox's real test images as a data dir (test split only) that every ikl-zoo command reads."""
    root = Path(root).expanduser()
    for dataset in datasets:  # refuse before writing anything
        _check_dataset(dataset)
        _refuse_foreign_cifar(root, dataset)
    for dataset in datasets:
        images = foolbox_sample(dataset)
        write_cifar_dir(root, dataset=dataset, test=images, source=SAMPLE_SOURCE)
    return root
