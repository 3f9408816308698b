"""A few rows of each dataset exactly as its publisher ships it: file names, column names, dtypes and the schema
metadata the `datasets` library writes (key "huggingface": info.features, ClassLabel names in label order). These
are written here, independently of t2i.data.synthetic, so the loaders are tested against the publishers' formats,
not against the project's own idea of them. The source of each fact is beside it."""

from __future__ import annotations

import io
import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

# huggan/wikiart (https://huggingface.co/datasets/huggan/wikiart, dataset card "Dataset Structure" and the features in
# every parquet file's metadata): image, artist (129 classes), genre (11), style (27, these names in label order).
WIKIART_STYLES = (
    "Abstract_Expressionism",
    "Action_painting",
    "Analytical_Cubism",
    "Art_Nouveau",
    "Baroque",
    "Color_Field_Painting",
    "Contemporary_Realism",
    "Cubism",
    "Early_Renaissance",
    "Expressionism",
    "Fauvism",
    "High_Renaissance",
    "Impressionism",
    "Mannerism_Late_Renaissance",
    "Minimalism",
    "Naive_Art_Primitivism",
    "New_Realism",
    "Northern_Renaissance",
    "Pointillism",
    "Pop_Art",
    "Post_Impressionism",
    "Realism",
    "Rococo",
    "Romanticism",
    "Symbolism",
    "Synthetic_Cubism",
    "Ukiyo_e",
)
# uoft-cs/cifar10 (dataset card, dataset_info.features: img: image, label: class_label with these names)
CIFAR10_LABELS = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# flwrlabs/celeba, img_align+identity+attr (dataset card): image, celeb_id (int), the 40 attributes of
# list_attr_celeba.txt as booleans, in that order
CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow",
    "Arched_Eyebrows",
    "Attractive",
    "Bags_Under_Eyes",
    "Bald",
    "Bangs",
    "Big_Lips",
    "Big_Nose",
    "Black_Hair",
    "Blond_Hair",
    "Blurry",
    "Brown_Hair",
    "Bushy_Eyebrows",
    "Chubby",
    "Double_Chin",
    "Eyeglasses",
    "Goatee",
    "Gray_Hair",
    "Heavy_Makeup",
    "High_Cheekbones",
    "Male",
    "Mouth_Slightly_Open",
    "Mustache",
    "Narrow_Eyes",
    "No_Beard",
    "Oval_Face",
    "Pale_Skin",
    "Pointy_Nose",
    "Receding_Hairline",
    "Rosy_Cheeks",
    "Sideburns",
    "Smiling",
    "Straight_Hair",
    "Wavy_Hair",
    "Wearing_Earrings",
    "Wearing_Hat",
    "Wearing_Lipstick",
    "Wearing_Necklace",
    "Wearing_Necktie",
    "Young",
)


def jpeg(rng: np.random.Generator, size: tuple[int, int], fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buffer, fmt)
    return buffer.getvalue()


def class_label(names) -> dict:
    return {"names": list(names), "_type": "ClassLabel"}


def write_parquet(path: Path, columns: dict, features: dict) -> Path:
    """A parquet file as `datasets` writes it: the columns plus the "huggingface" schema metadata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table(columns).replace_schema_metadata({"huggingface": json.dumps({"info": {"features": features}})})
    pq.write_table(table, path)
    return path


def wikiart(root: Path, shards: int = 2, rows: int = 10, seed: int = 0) -> list[Path]:
    """``root/wikiart/data/train-0000k-of-00072.parquet`` (the repository's file names)."""
    rng = np.random.default_rng(seed)
    files = []
    for k in range(shards):
        columns = {
            "image": [{"bytes": jpeg(rng, (90, 70)), "path": None} for _ in range(rows)],
            "artist": pa.array(rng.integers(0, 129, rows), pa.int64()),
            "genre": pa.array(rng.integers(0, 11, rows), pa.int64()),
            "style": pa.array(rng.integers(0, 27, rows), pa.int64()),
        }
        # artist and genre are ClassLabels too; t2i reads only `style`, so only its names are reproduced here
        features = {
            "image": {"_type": "Image"},
            "artist": {"_type": "ClassLabel"},
            "genre": {"_type": "ClassLabel"},
            "style": class_label(WIKIART_STYLES),
        }
        files.append(write_parquet(root / "wikiart" / "data" / f"train-{k:05d}-of-00072.parquet", columns, features))
    return files


def cifar10_parquet(root: Path, rows: int = 10, seed: int = 0) -> list[Path]:
    """``root/cifar10/plain_text/{train,test}-00000-of-00001.parquet`` (uoft-cs/cifar10's layout)."""
    rng = np.random.default_rng(seed)
    files = []
    for split in ("train", "test"):
        columns = {
            "img": [{"bytes": jpeg(rng, (32, 32), "PNG"), "path": None} for _ in range(rows)],
            "label": pa.array(rng.integers(0, 10, rows), pa.int64()),
        }
        features = {"img": {"_type": "Image"}, "label": class_label(CIFAR10_LABELS)}
        files.append(
            write_parquet(root / "cifar10" / "plain_text" / f"{split}-00000-of-00001.parquet", columns, features)
        )
    return files


def celeba(root: Path, rows: int = 12, seed: int = 0) -> list[Path]:
    """``root/celeba/img_align+identity+attr/{train,valid}-00000-of-0000n.parquet``: 178x218 aligned faces."""
    rng = np.random.default_rng(seed)
    files = []
    for split, of in (("train", 19), ("valid", 3)):
        columns = {
            "image": [{"bytes": jpeg(rng, (178, 218)), "path": None} for _ in range(rows)],
            "celeb_id": pa.array(rng.integers(0, 10177, rows), pa.int64()),
            **{name: pa.array(rng.random(rows) < 0.3, pa.bool_()) for name in CELEBA_ATTRIBUTES},
        }
        features = {
            "image": {"_type": "Image"},
            "celeb_id": {"dtype": "int64", "_type": "Value"},
            **{name: {"dtype": "bool", "_type": "Value"} for name in CELEBA_ATTRIBUTES},
        }
        files.append(
            write_parquet(
                root / "celeba" / "img_align+identity+attr" / f"{split}-00000-of-{of:05d}.parquet", columns, features
            )
        )
    return files


def cifar10_pickles(root: Path, per_batch: int = 6, seed: int = 0) -> Path:
    """torchvision's ``cifar-10-batches-py``: pickled dicts with ``data`` (N x 3072 uint8, channel-major rows),
    ``labels``, ``batch_label`` and ``filenames``, five training batches and ``test_batch``, and ``batches.meta`` with
    ``label_names`` (https://www.cs.toronto.edu/~kriz/cifar.html, "Dataset layout"). The originals were pickled by
    Python 2, whose byte-string keys torchvision reads back as ``str`` (``pickle.load(f, encoding="latin1")``), which
    is what protocol-2 ``str`` keys give too."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        batch = {
            "batch_label": name,
            "labels": rng.integers(0, 10, per_batch).tolist(),
            "data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            "filenames": [f"{name}_{i}.png" for i in range(per_batch)],
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {"label_names": list(CIFAR10_LABELS), "num_cases_per_batch": per_batch, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def mnist_idx(root: Path, train: int = 12, test: int = 10, seed: int = 0) -> Path:
    """torchvision's ``MNIST/raw``: the four IDX files (http://yann.lecun.com/exdb/mnist/, "FILE FORMATS"): magic
    0x00000803 (images) / 0x00000801 (labels), big-endian int32 sizes, then uint8 pixels or labels."""
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", train), ("t10k", test)):
        pixels = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x803, n, 28, 28) + pixels.tobytes())
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, n) + labels.tobytes())
    return raw
