import pickle
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets import CIFAR10, CIFAR100
from torchvision.transforms import ToTensor

from ikl_zoo.data import (
    MARKER_FILENAME,
    cifar_dataset,
    data_source,
    foolbox_sample,
    load_test_examples,
    write_cifar_dir,
    write_sample_data_dir,
)
from ikl_zoo.errors import DataError, DatasetNotFoundError


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory) -> Path:
    return write_sample_data_dir(tmp_path_factory.mktemp("sample"))


def _random_split(n: int, n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, n_classes, n)


@pytest.mark.parametrize(
    ("dataset", "first_labels"), [("cifar10", [3, 8, 8, 0, 6]), ("cifar100", [49, 33, 72, 51, 71])]
)
def test_foolbox_sample_is_the_real_test_images_in_order(dataset, first_labels):
    images, labels = foolbox_sample(dataset)
    assert images.shape == (20, 32, 32, 3) and images.dtype == np.uint8
    assert labels.tolist()[:5] == first_labels  # CIFAR test labels 0-4
    assert len({image.tobytes() for image in images}) == 20


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
def test_sample_dir_reads_back_as_torchvision_dataset(sample_dir, dataset):
    test_set = cifar_dataset(dataset, data_dir=sample_dir, train=False, download=False)
    assert isinstance(test_set, CIFAR100 if dataset == "cifar100" else CIFAR10)
    assert len(test_set) == 20
    assert len(test_set.classes) == (100 if dataset == "cifar100" else 10)
    images, labels = foolbox_sample(dataset)
    image, label = test_set[7]
    assert isinstance(image, Image.Image)
    assert np.array_equal(np.asarray(image), images[7]) and label == labels[7]


def test_load_test_examples_is_robustbench_protocol(sample_dir):
    x, y = load_test_examples("cifar10", data_dir=sample_dir, n_examples=12)
    assert x.shape == (12, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    images, labels = foolbox_sample("cifar10")
    expected = torch.stack([ToTensor()(Image.fromarray(image)) for image in images[:12]])
    assert torch.equal(x, expected)
    assert y.tolist() == labels[:12].tolist()
    x_all, _ = load_test_examples("cifar10", data_dir=sample_dir)
    assert len(x_all) == 20 and torch.equal(x_all[:12], x)


def test_more_examples_than_available_names_the_fix(sample_dir):
    with pytest.raises(DatasetNotFoundError, match="--n-examples 20"):
        load_test_examples("cifar10", data_dir=sample_dir, n_examples=10000)


def test_sample_dir_has_no_training_split(sample_dir):
    with pytest.raises(DatasetNotFoundError, match="without the training split"):
        cifar_dataset("cifar10", data_dir=sample_dir, train=True)


@pytest.mark.parametrize(("dataset", "files"), [
    ("cifar10", ["data_batch_1", "data_batch_5", "test_batch", "batches.meta"]),
    ("cifar100", ["train", "test", "meta"]),
])
def test_write_cifar_dir_round_trips_train_and_test(tmp_path, dataset, files):
    n_classes = 100 if dataset == "cifar100" else 10
    train, test = _random_split(23, n_classes, 0), _random_split(7, n_classes, 1)
    root = write_cifar_dir(tmp_path, dataset=dataset, train=train, test=test)
    folder = root / (CIFAR100 if dataset == "cifar100" else CIFAR10).base_folder
    assert all((folder / name).is_file() for name in files)
    for split, (images, labels) in ((True, train), (False, test)):
        loaded = cifar_dataset(dataset, data_dir=root, train=split, transform=ToTensor())
        assert np.array_equal(loaded.data, images) and loaded.targets == labels.tolist()
        image, label = loaded[3]
        assert torch.equal(image, ToTensor()(Image.fromarray(images[3]))) and label == labels[3]


def test_unmarked_dir_keeps_torchvision_md5_check(tmp_path):
    write_cifar_dir(tmp_path, dataset="cifar10", train=_random_split(10, 10, 0), test=_random_split(5, 10, 1))
    (tmp_path / "cifar-10-batches-py" / MARKER_FILENAME).unlink()
    with pytest.raises(DatasetNotFoundError, match="does not match torchvision's md5 sums"):
        cifar_dataset("cifar10", data_dir=tmp_path, train=False, download=False)


def test_missing_data_says_where_to_put_it(tmp_path):
    with pytest.raises(DatasetNotFoundError) as error:
        cifar_dataset("cifar100", data_dir=tmp_path, train=False, download=False)
    message = str(error.value)
    assert "\n" not in message
    assert "cifar-100-python/ (train, test, meta" in message and str(tmp_path) in message
    assert "ikl-zoo sample-data --out" in message


def test_missing_training_data_does_not_point_to_the_test_only_sample_folder(tmp_path):
    with pytest.raises(DatasetNotFoundError) as error:
        cifar_dataset("cifar10", data_dir=tmp_path, train=True, download=False)
    message = str(error.value)
    assert "cifar-10-batches-py/ (data_batch_1" in message and "sample-data" not in message


def test_failed_download_is_one_clear_line(tmp_path, monkeypatch):
    def unreachable(self):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(CIFAR10, "download", unreachable)
    expected = "download failed: .*Name or service not known.*cifar-10-batches-py/"
    with pytest.raises(DatasetNotFoundError, match=expected):
        cifar_dataset("cifar10", data_dir=tmp_path, train=False, download=True)


def test_marked_dir_never_unpickles_code(tmp_path):
    root = write_cifar_dir(tmp_path, dataset="cifar10", test=_random_split(4, 10, 0))

    class Payload:
        def __reduce__(self):
            return (print, ("executed",))

    (root / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({"data": Payload(), "labels": []}))
    expected = "not a readable CIFAR batch.*builtins.print.*write the folder again"
    with pytest.raises(DatasetNotFoundError, match=expected):
        cifar_dataset("cifar10", data_dir=root, train=False)


def test_write_cifar_dir_rejects_bad_arrays(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        write_cifar_dir(tmp_path, dataset="cifar10", test=(np.zeros((2, 32, 32, 3), np.float32), [0, 1]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 9\]"):
        write_cifar_dir(tmp_path, dataset="cifar10", test=(np.zeros((2, 32, 32, 3), np.uint8), [0, 10]))


def _pickle(obj) -> bytes:
    return pickle.dumps(obj, protocol=4)


def _batch_with(**changes) -> bytes:
    rows = np.zeros((4, 3072), np.uint8)
    return _pickle({"batch_label": "test", "labels": [0, 1, 2, 3], "data": rows, **changes})


def _make_test_batch_a_folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


# (file to damage, how, words the one-line error must contain)
DAMAGED_FOLDERS = {
    "meta missing": ("batches.meta", Path.unlink, "cannot read {path} (No such file or directory)"),
    "meta without names": ("batches.meta", lambda path: path.write_bytes(_pickle({"label_names": ["cat"]})),
                           "{path}: 'label_names' must list the 10 class names"),
    "empty batch": ("test_batch", lambda path: path.write_bytes(b""), "{path} is not a readable CIFAR batch"),
    "truncated batch": ("test_batch", lambda path: path.write_bytes(path.read_bytes()[:500]),
                        "{path} is not a readable CIFAR batch (pickle data was truncated)"),
    "garbage batch": ("test_batch", lambda path: path.write_bytes(b"\x14garbage"),
                      "{path} is not a readable CIFAR batch"),
    "list batch": ("test_batch", lambda path: path.write_bytes(_pickle([1, 2, 3])),
                   "{path} holds a pickled list, not a CIFAR batch (a dict)"),
    "short data": ("test_batch", lambda path: path.write_bytes(_batch_with(data=np.zeros(1000, np.uint8))),
                   "{path}: 'data' is uint8 (1000,), not uint8 rows of 3072 bytes"),
    "float data": ("test_batch", lambda path: path.write_bytes(_batch_with(data=np.zeros((4, 3072)))),
                   "{path}: 'data' is float64 (4, 3072)"),
    "too few labels": ("test_batch", lambda path: path.write_bytes(_batch_with(labels=[0, 1])),
                       "{path}: 'labels' must be 4 class indices in [0, 9], found 2 values"),
    "label out of range": ("test_batch", lambda path: path.write_bytes(_batch_with(labels=[0, 1, 2, 10])),
                           "{path}: 'labels' must be 4 class indices in [0, 9]"),
    "batch is a folder": ("test_batch", _make_test_batch_a_folder, "lost its test split (test_batch missing"),
    "marker is a list": (MARKER_FILENAME, lambda path: path.write_text("[1,2]"),
                         "{path} holds a JSON list, not ikl-zoo's marker (an object)"),
    "marker not JSON": (MARKER_FILENAME, lambda path: path.write_text("{"), "{path} is not valid JSON"),
}


@pytest.mark.parametrize("case", DAMAGED_FOLDERS)
def test_damaged_ikl_zoo_folder_is_one_line_naming_file_and_fix(tmp_path, case):
    name, damage, expected = DAMAGED_FOLDERS[case]
    write_sample_data_dir(tmp_path, datasets=("cifar10",))
    path = tmp_path / "cifar-10-batches-py" / name
    damage(path)
    with pytest.raises(DataError) as error:
        load_test_examples("cifar10", data_dir=tmp_path, download=False)
    message = str(error.value)
    assert "\n" not in message and expected.format(path=path) in message, message
    assert f"`ikl-zoo sample-data --out {tmp_path}`" in message
    if name != MARKER_FILENAME:  # the record's data source reads only the marker
        data_source("cifar10", data_dir=tmp_path)


def test_folder_from_arrays_names_write_cifar_dir_as_the_fix(tmp_path):
    write_cifar_dir(tmp_path, dataset="cifar100", test=_random_split(3, 100, 0))
    (tmp_path / "cifar-100-python" / "meta").unlink()
    with pytest.raises(DataError, match=r"cannot read .*meta .*write the folder again with write_cifar_dir"):
        cifar_dataset("cifar100", data_dir=tmp_path, train=False)


def test_write_cifar_dir_refuses_real_cifar_and_writes_nothing(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    (folder / "test").write_bytes(b"the real test split")
    with pytest.raises(DataError, match="holds CIFAR-100 files that ikl-zoo did not write \\(test\\)"):
        write_cifar_dir(tmp_path, dataset="cifar100", test=_random_split(3, 100, 0))
    assert sorted(path.name for path in folder.iterdir()) == ["test"]
    assert (folder / "test").read_bytes() == b"the real test split"


def test_write_cifar_dir_into_an_unwritable_place_is_a_data_error(tmp_path):
    (tmp_path / "a_file").write_text("")
    expected = "cannot write .*a_file/cifar-10-batches-py .*choose a writable folder"
    with pytest.raises(DataError, match=expected):
        write_cifar_dir(tmp_path / "a_file", dataset="cifar10", test=_random_split(3, 10, 0))


def test_failed_download_leaves_nothing_that_was_not_there(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    def cut_off(url, path, *_):
        Path(path).write_bytes(b"half an archive")
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(tv_utils, "_get_redirect_url", lambda url, **_: url)
    monkeypatch.setattr(tv_utils, "_urlretrieve", cut_off)
    monkeypatch.setattr(tv_utils, "_is_remote_location_available", lambda: False)
    new = tmp_path / "new" / "data"
    with pytest.raises(DatasetNotFoundError, match="download failed"):
        cifar_dataset("cifar10", data_dir=new, train=False, download=True)
    assert not (tmp_path / "new").exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine\n")
    with pytest.raises(DatasetNotFoundError, match="download failed"):
        cifar_dataset("cifar100", data_dir=kept, train=False, download=True)
    assert [path.name for path in kept.iterdir()] == ["notes.txt"]
    with pytest.raises(DatasetNotFoundError, match="download disabled"):  # nothing made, nothing to undo
        cifar_dataset("cifar10", data_dir=tmp_path / "absent", train=False, download=False)
