"""CIFAR-10/100 in torchvision's layout (md5-checked), RobustBench's test protocol, and foolbox's real images.
A folder ikl-zoo wrote carries a marker file and is read without md5 checks, unpickling numpy types only."""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.datasets import CIFAR10, CIFAR100
from torchvision.datasets.utils import check_integrity

from ikl_zoo.atomic import atomic_path, write_json_atomic
from ikl_zoo.errors import DataError, DatasetNotFoundError, first_line
from ikl_zoo.threat import DATASET_TITLES, DATASETS

MARKER_FILENAME = "ikl-zoo-data.json"  # inside cifar-10-batches-py/ or cifar-100-python/
SAMPLE_SOURCE = "foolbox sample (test 0-19)"  # the marker's source for `ikl-zoo sample-data`
_ROW_BYTES = 3 * 32 * 32
_TORCHVISION_CLASS = {"cifar10": CIFAR10, "cifar100": CIFAR100}
_LABEL_KEY = {"cifar10": "labels", "cifar100": "fine_labels"}

_CLASS_NAMES = {"cifar10": "airplane automobile bird cat deer dog frog horse ship truck", "cifar100": """
    apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can
    castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin
    elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard
    lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear
    pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal
    shark shrew skunk skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank
    telephone television tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm
"""}
_CLASSES = {dataset: tuple(names.split()) for dataset, names in _CLASS_NAMES.items()}

Split = tuple[np.ndarray, "np.ndarray | list[int]"]  # uint8 NHWC images (N, 32, 32, 3), integer labels


def _check_dataset(dataset: str) -> None:
    if dataset not in DATASETS:
        raise DatasetNotFoundError(f"unknown dataset {dataset!r}", fix="choose cifar10 or cifar100")


def _folder(root: Path, dataset: str) -> Path:
    return root / _TORCHVISION_CLASS[dataset].base_folder


def _split_files(dataset: str, train: bool) -> list[str]:
    return [name for name, _ in getattr(_TORCHVISION_CLASS[dataset], "train_list" if train else "test_list")]


def _all_files(dataset: str) -> list[str]:
    meta = _TORCHVISION_CLASS[dataset].meta["filename"]
    return [*_split_files(dataset, train=True), *_split_files(dataset, train=False), meta]


class MarkedCIFAR10(CIFAR10):
    """A CIFAR folder written by ikl-zoo: same layout and item format as torchvision's, no md5 check."""

    dataset_name = "cifar10"

    def __init__(self, root: str | os.PathLike[str], train: bool = True,
                 **transforms: Callable | None) -> None:
        super(CIFAR10, self).__init__(root, **transforms)  # VisionDataset's, not CIFAR10's md5 checks
        self.train = train
        self.data, self.targets, self.classes = _read_marked_split(self.dataset_name, Path(self.root), train)
        self.class_to_idx = {name: index for index, name in enumerate(self.classes)}


class MarkedCIFAR100(MarkedCIFAR10, CIFAR100):
    dataset_name = "cifar100"


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings and numpy arrays; refuses every other global (no code execution)."""

    _ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "_reconstruct"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _read_dict(path: Path, fix: str, *, json_marker: bool = False) -> dict:
    """The dict in a CIFAR pickle (numpy types only) or in the marker (JSON); every failure names the fix."""
    kind, invalid, expected = (("JSON", "valid JSON", "ikl-zoo's marker (an object)") if json_marker
                               else ("pickled", "a readable CIFAR batch", "a CIFAR batch (a dict)"))
    try:
        with open(path, "rb") as handle:
            unpickler = _NumpyOnlyUnpickler(handle, encoding="latin1")
            entry = json.load(handle) if json_marker else unpickler.load()
    except OSError as error:
        raise DataError(f"cannot read {path} ({error.strerror or first_line(error)})", fix=fix) from None
    except Exception as error:  # whatever a damaged or foreign file raises, it is not what ikl-zoo wrote
        raise DataError(f"{path} is not {invalid} ({first_line(error)})", fix=fix) from None
    if not isinstance(entry, dict):
        raise DataError(f"{path} holds a {kind} {type(entry).__name__}, not {expected}", fix=fix)
    return entry


def _marker(data_dir: str | os.PathLike[str], dataset: str) -> dict | None:
    """The marker of an ikl-zoo folder; None for a folder without one (real CIFAR, or nothing yet)."""
    _check_dataset(dataset)
    root = Path(data_dir).expanduser()
    path = _folder(root, dataset) / MARKER_FILENAME
    if not path.is_file():
        return None
    fix = (f"write the folder again with `ikl-zoo sample-data --out {root}`, or delete {path.name} if the "
           f"folder holds the real {DATASET_TITLES[dataset]}")
    return _read_dict(path, fix, json_marker=True)


def _checked_batch(path: Path, dataset: str, fix: str) -> tuple[np.ndarray, list[int]]:
    entry, label_key, n_classes = _read_dict(path, fix), _LABEL_KEY[dataset], len(_CLASSES[dataset])
    data = entry.get("data")
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == _ROW_BYTES):
        found = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: 'data' is {found}, not uint8 rows of {_ROW_BYTES} bytes (N, 3 x 32 x 32)",
                        fix=fix)
    labels = np.asarray(entry.get(label_key, []))
    if not _valid_labels(labels, len(data), n_classes):
        raise DataError(f"{path}: {label_key!r} must be {len(data)} class indices in [0, {n_classes - 1}], "
                        f"found {labels.size} values", fix=fix)
    return data, [int(label) for label in labels]


def _read_marked_split(dataset: str, root: Path, train: bool) -> tuple[np.ndarray, list[int], list[str]]:
    """An ikl-zoo folder's split, checked; a missing split was lost since it was written, or never written."""
    folder, marker = _folder(root, dataset), _marker(root, dataset) or {}
    key, split = ("train", "training") if train else ("test", "test")
    arrays = "" if marker.get("source") == SAMPLE_SOURCE else "write_cifar_dir, or use "
    fix = f"write the folder again with {arrays}`ikl-zoo sample-data --out {root}`"
    files = _split_files(dataset, train)
    if missing := [name for name in files if not (folder / name).is_file()]:
        written = marker.get("splits")
        if isinstance(written, dict) and key in written:
            raise DataError(f"{folder} lost its {split} split ({', '.join(missing)} missing or not a file)",
                            fix=fix)
        raise DatasetNotFoundError(f"{folder} was written by ikl-zoo ({marker.get('source', 'arrays')}) "
                                   f"without the {split} split ({', '.join(missing)} missing)",
                                   fix=f"put the real {DATASET_TITLES[dataset]} there or another --data-dir")
    batches = [_checked_batch(folder / name, dataset, fix) for name in files]
    meta, n_classes = _TORCHVISION_CLASS[dataset].meta, len(_CLASSES[dataset])
    path = folder / meta["filename"]
    classes = _read_dict(path, fix).get(meta["key"])
    if not (isinstance(classes, list) and len(classes) == n_classes
            and all(isinstance(name, str) for name in classes)):
        raise DataError(f"{path}: {meta['key']!r} must list the {n_classes} class names", fix=fix)
    images = np.vstack([data for data, _ in batches]).reshape(-1, 3, 32, 32).transpose((0, 2, 3, 1))
    return images, [label for _, labels in batches for label in labels], classes


def cifar_dataset(dataset: str, *, data_dir: str | os.PathLike[str], train: bool,
                  transform: Callable | None = None, download: bool = True) -> torch.utils.data.Dataset:
    """CIFAR-10/100 from ``data_dir`` in torchvision's layout: real CIFAR md5-checked (and downloaded when
    missing, if ``download``), a folder :func:`write_cifar_dir` wrote as is; missing data names the fix."""
    root = Path(data_dir).expanduser()
    if _marker(root, dataset) is not None:
        marked = MarkedCIFAR100 if dataset == "cifar100" else MarkedCIFAR10
        return marked(root, train=train, transform=transform)
    try:
        with _undone_on_failure(root):
            return _TORCHVISION_CLASS[dataset](root, train=train, transform=transform, download=download)
    except (OSError, RuntimeError) as error:
        raise _not_found(root, dataset, error, train=train, download=download) from None


@contextmanager
def _undone_on_failure(root: Path) -> Iterator[None]:
    """A failed download leaves nothing that was not there: no empty --data-dir, no half archive."""
    made = next((path for path in reversed((root, *root.parents)) if not path.exists()), None)
    before = set(root.iterdir()) if made is None and root.is_dir() else set()
    try:
        yield
    except BaseException:
        new = set(root.iterdir()) - before if made is None and root.is_dir() else {made} - {None}
        for path in new:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        raise


def _not_found(root: Path, dataset: str, error: Exception, *, train: bool,
               download: bool) -> DatasetNotFoundError:
    tv, folder, name = _TORCHVISION_CLASS[dataset], _folder(root, dataset), DATASET_TITLES[dataset]
    if folder.is_dir() and all((folder / n).is_file() for n in _all_files(dataset)):
        batches = tv.train_list + tv.test_list
        corrupted = ", ".join(n for n, md5 in batches if not check_integrity(folder / n, md5)) or "meta"
        return DatasetNotFoundError(f"{name} in {folder} does not match torchvision's md5 sums ({corrupted})",
                                    fix=f"replace those files from {tv.filename}, or delete the folder so it "
                                    "is downloaded again")
    reason = f"download failed: {first_line(error)}" if download else "download disabled"
    files = ", ".join(_all_files(dataset))
    fix = f"put the folder {tv.base_folder}/ ({files}, as extracted from {tv.filename}) in {root}"
    if not train:  # the sample folder holds no training images
        fix += f", or run `ikl-zoo sample-data --out {root}` for the 20 real test images foolbox ships"
    return DatasetNotFoundError(f"{name} not found in {root} ({reason})", fix=fix)


def is_official_cifar(dataset: str, *, data_dir: str | os.PathLike[str]) -> bool:
    """Whether ``data_dir`` holds torchvision's md5-checked CIFAR (the published figures' images)."""
    return _marker(data_dir, dataset) is None


def data_source(dataset: str, *, data_dir: str | os.PathLike[str]) -> str:
    marker = _marker(data_dir, dataset)
    if marker is None:
        return f"{DATASET_TITLES[dataset]} (torchvision, md5-checked)"
    return f"{DATASET_TITLES[dataset]} folder written by ikl-zoo: {marker.get('source', 'arrays')}"


def load_test_examples(dataset: str, *, data_dir: str | os.PathLike[str], n_examples: int | None = None,
                       download: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """RobustBench's protocol: the first ``n_examples`` test images, in order, ``ToTensor()`` only, as float32
    (N, 3, 32, 32) in [0, 1] and int64 labels; more than the folder holds is an error, not fewer images."""
    test_set = cifar_dataset(dataset, data_dir=data_dir, train=False, download=download)
    available = len(test_set)
    n_examples = available if n_examples is None else n_examples
    if n_examples < 1:
        raise DatasetNotFoundError(f"n_examples must be at least 1, got {n_examples}")
    if n_examples > available:
        raise DatasetNotFoundError(f"asked for {n_examples} {DATASET_TITLES[dataset]} test images but "
                                   f"{data_dir} holds {available}", fix=f"pass --n-examples {available} or "
                                   "point --data-dir at the full test set")
    # Exactly torchvision's ToTensor on a uint8 HWC image: CHW float32 divided by 255.
    x = torch.from_numpy(test_set.data[:n_examples]).permute(0, 3, 1, 2).float().div(255).contiguous()
    return x, torch.as_tensor(test_set.targets[:n_examples], dtype=torch.int64)


def write_cifar_dir(root: str | os.PathLike[str], *, dataset: str, test: Split | None = None,
                    train: Split | None = None, source: str = "arrays") -> Path:
    """Write images in torchvision's CIFAR pickle layout under ``root``, with ikl-zoo's marker file; a folder
    holding CIFAR files that ikl-zoo did not write (the real dataset) is refused, not overwritten."""
    root = Path(root).expanduser()
    _refuse_foreign_cifar(root, dataset)  # an unknown dataset too
    if test is None and train is None:
        raise ValueError("write_cifar_dir needs a test split, a train split, or both")
    classes, folder = _CLASSES[dataset], _folder(root, dataset)
    splits = {name: _validated_split(split, name, len(classes))
              for name, split in (("test", test), ("train", train)) if split is not None}
    counts = {}
    with suppress(DataError):  # a damaged marker of ikl-zoo's own folder: writing the folder repairs it
        written = (_marker(root, dataset) or {}).get("splits")
        counts = dict(written) if isinstance(written, dict) else {}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for split_name, (images, labels) in splits.items():
            counts[split_name] = len(labels)
            _write_split(folder, dataset, split_name, images, labels)
        meta = _TORCHVISION_CLASS[dataset].meta
        _write_pickle(folder / meta["filename"], {meta["key"]: list(classes)})
        marker = {"written_by": "ikl-zoo", "dataset": dataset, "source": source, "splits": counts}
        write_json_atomic(folder / MARKER_FILENAME, marker)
    except OSError as error:
        raise DataError(f"cannot write {folder} ({error.strerror or first_line(error)})",
                        fix="choose a writable folder (--out)") from None
    return root


def _write_split(folder: Path, dataset: str, split_name: str, images: np.ndarray, labels: np.ndarray) -> None:
    files = _split_files(dataset, train=split_name == "train")
    chunks = np.array_split(np.arange(len(labels)), len(files))
    for number, (name, indices) in enumerate(zip(files, chunks, strict=True), start=1):
        rows = images[indices].transpose(0, 3, 1, 2).reshape(len(indices), -1)
        _write_pickle(folder / name, {"batch_label": f"{split_name} batch {number} of {len(files)}",
                                      _LABEL_KEY[dataset]: [int(label) for label in labels[indices]],
                                      "data": np.ascontiguousarray(rows),
                                      "filenames": [f"{split_name}_{int(i):05d}.png" for i in indices]})


def _refuse_foreign_cifar(root: Path, dataset: str) -> None:
    """Refuse a folder holding CIFAR files without ikl-zoo's marker: the real dataset, not to overwrite."""
    _check_dataset(dataset)
    folder = _folder(root, dataset)
    found = [name for name in _all_files(dataset) if (folder / name).exists()]
    if found and not (folder / MARKER_FILENAME).exists():
        raise DataError(f"{folder} holds {DATASET_TITLES[dataset]} files that ikl-zoo did not write "
                        f"({', '.join(found)}): writing there would replace them",
                        fix="choose another folder (--out)")


def _valid_labels(labels: np.ndarray, n: int, n_classes: int) -> bool:
    """``n`` integer class indices in [0, n_classes)."""
    in_range = not labels.size or (np.issubdtype(labels.dtype, np.integer) and labels.min() >= 0
                                   and labels.max() < n_classes)
    return labels.shape == (n,) and in_range


def _validated_split(split: Split, name: str, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = np.asarray(split[0]), np.asarray(split[1])
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise ValueError(f"{name} images must be uint8 (N, 32, 32, 3), got {images.dtype} {images.shape}")
    if not _valid_labels(labels, len(images), n_classes):
        raise ValueError(f"{name} labels must lie in [0, {n_classes - 1}], one integer per image, got "
                         f"shape {labels.shape}")
    return images, labels.astype(np.int64)


def _write_pickle(path: Path, obj: Any) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        pickle.dump(obj, handle, protocol=4)


def foolbox_sample(dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """The real CIFAR test images foolbox ships (test indices 0-19): uint8 NHWC images and int64 labels."""
    _check_dataset(dataset)
    spec = importlib.util.find_spec("foolbox")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotFoundError("foolbox is not installed", fix="`pip install foolbox` (it ships them)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    pattern = re.compile(rf"^{dataset}_(\d+)_(\d+)\.png$")
    found = sorted((int(m.group(1)), int(m.group(2)), path) for path in folder.glob(f"{dataset}_*.png")
                   if (m := pattern.match(path.name)))
    if not found:
        raise DatasetNotFoundError(f"no {dataset} images in {folder}", fix="reinstall foolbox")
    if [index for index, _, _ in found] != list(range(len(found))):
        raise DatasetNotFoundError(f"foolbox's {dataset} images are not test indices 0..{len(found) - 1}")
    images = np.stack([np.asarray(Image.open(path).convert("RGB"), dtype=np.uint8) for _, _, path in found])
    return images, np.array([label for _, label, _ in found], dtype=np.int64)


def write_sample_data_dir(root: str | os.PathLike[str], *,
                          datasets: tuple[str, ...] = ("cifar10", "cifar100")) -> Path:
    """Write foolbox's real test images as a data dir (test split only) that every ikl-zoo command reads."""
    root = Path(root).expanduser()
    for dataset in datasets:  # refuse before writing anything
        _refuse_foreign_cifar(root, dataset)
    for dataset in datasets:
        write_cifar_dir(root, dataset=dataset, test=foolbox_sample(dataset), source=SAMPLE_SOURCE)
    return root
