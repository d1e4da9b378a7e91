"""The remote-sensing adapter: datasets, encoders, the RSICD alignment task and its evaluators.

:class:`RemoteSensingAdapter` is the one object a benchmark or a notebook needs::

    from domains.remote_sensing import RemoteSensingAdapter
    rs = RemoteSensingAdapter("data/remote_sensing", cache_dir="cache/")
    task = rs.build_task()              # AlignmentTask: RSICD train images <-> their 5 captions
    rows = task.evaluate(embed_image, embed_text)

Data layout expected under ``data_dir`` (the published formats, see ``README.md`` here)::

    rsicd/dataset_rsicd.json   rsicd/images/*.jpg   rsicd/classes/<Class>.txt
    ucm/images/<class>/<class>NN.jpg               (UC Merced scenes; zero-shot, probe, clustering)
    ucm/captions/data_{train,val,test}_UCM.json    (optional extra unpaired text)
    sydney/captions/*.json   rsitmd/captions/*_caps.txt + *_filename.txt   (extra unpaired text)

The task (``build_task``): items are the RSICD ``train`` split images (7,862). ``train_a`` =
image features ``[N, V, D_img]`` (view 0 clean, views 1.. deterministic augmentations);
``train_b`` = the embeddings of the 5 captions of each image ``[N, 5, D_txt]`` (the captions
are the text "views"); ``extra_unpaired_b`` = caption groups of Sydney-captions and RSITMD
(default) as ``[M, 5, D_txt]``, text without images that only ever enters the unpaired-B pool.
UCM-captions are not in the default extra text because the UC Merced images are evaluation
data (their captions name the scene); add ``"ucm"`` to ``extra_text`` to use them anyway.

Evaluation rows (``task``, ``dataset``, ``metric``, ``value``; DESIGN.md metric names):

* ``retrieval`` / ``rsicd``: the RSICD test split, 1,093 images x 5 captions, ``i2t_R@1/5/10``,
  ``t2i_R@1/5/10``, medians, ``mean_recall``.
* ``zeroshot`` / ``rsicd`` (31 scene classes of the RSICD class lists, test images) and
  ``zeroshot`` / ``ucm`` (every UC Merced image present, 16 classes here): prompts
  ``template.format(readable class name)`` (see :mod:`domains.remote_sensing.classes`),
  averaged per class; ``zeroshot_top1/top5/balanced_acc``.
* ``linear_probe`` (``linear_probe_acc``): RSICD (fit on the train-split image embeddings, test
  on the test split) and UCM (stratified half/half split, seeded).
* ``clustering`` (``nmi``, ``ari``, ``v_measure``; k-means with k = number of classes) of the
  image embeddings of the RSICD test split and of UCM.
* ``gap`` / ``rsicd``: modality-gap metrics between the test images and their first caption.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from gentleclip.cache import FeatureCache, FeatureEncoder, fingerprint
from gentleclip.items import item_array
from gentleclip.leakage import filter_unpaired_groups, normalize_text
from gentleclip.task import AlignmentTask
from gentleclip.validation import ValidationSet

from .classes import DEFAULT_TEMPLATES, class_prompts
from .datasets import (
    read_rsicd,
    read_rsicd_class_lists,
    read_rsitmd_captions,
    read_sydney_captions,
    read_ucm_captions,
    read_ucm_scenes,
)
from .datasets import rsicd as rsicd_layout
from .encoders import DEFAULT_IMAGE_ENCODER, ImageEncoder
from .images import item_key
from .records import RasterTile, RecordSet, RemoteSensingDataWarning

__all__ = ["RemoteSensingAdapter", "TrainingText", "EvalData", "DATA_INSTRUCTIONS", "image_fingerprint",
           "caption_groups"]

EmbedFn = Callable[[np.ndarray], np.ndarray]

#: Printed when a dataset folder is missing.
DATA_INSTRUCTIONS = """\
Expected layout under data_dir (the datasets in their published formats):
  rsicd/dataset_rsicd.json          RSICD captions (Karpathy layout: images[].filename, split, sentences[].raw)
  rsicd/images/<file>.jpg           the 10,921 RSICD images
  rsicd/classes/<Class>.txt         RSICD scene class lists (one image file name per line)
  ucm/images/<class>/<class>NN.jpg  UC Merced Land Use scenes (any subset of the 21 classes)
  ucm/captions/data_{train,val,test}_UCM.json   UCM-captions (COCO layout)         [only for extra_text 'ucm']
  sydney/captions/*.json            Sydney-captions (COCO layout)                     [only for extra_text 'sydney']
  rsitmd/captions/<split>_caps.txt + <split>_filename.txt   RSITMD captions          [only for extra_text 'rsitmd']
Sources: RSICD https://github.com/201528014227051/RSICD_optimal ; UC Merced
http://weegee.vision.ucmerced.edu/datasets/landuse.html ;
UCM/Sydney-captions https://github.com/201528014227051/RSICD_optimal (Qu et al. 2016) ; RSITMD
https://github.com/xiaoyuan1996/AMFMN.
Point data_dir at the folder holding rsicd/ (or at its parent holding remote_sensing/); pass ucm=False or
extra_text=() to run without the optional parts."""

_EXTRA_TEXT_SETS = ("sydney", "rsitmd", "ucm")


def image_fingerprint(items: Sequence[Any], content_limit: int = 16 << 20) -> str:
    """Fingerprint of image items that survives moving the data folder.

    Each item contributes its location-independent key (:func:`~domains.remote_sensing.images.item_key`)
    and a BLAKE2 hash of the file's bytes (files above ``content_limit`` bytes, e.g. big
    GeoTIFFs: their size and modification time instead), so edited images change it.
    """
    parts: list[tuple] = []
    for it in items:
        path = Path(it.path if isinstance(it, RasterTile) else it)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise FileNotFoundError(f"image file not found: {path}") from None
        if st.st_size <= content_limit:
            digest = hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
        else:
            digest = f"size={st.st_size},mtime={st.st_mtime_ns}"
        scaling = it.scaling if isinstance(it, RasterTile) else None
        parts.append((item_key(it), digest, None if scaling is None else str(scaling)))
    return fingerprint(parts)


def caption_groups(records: Iterable[Any], per_item: int) -> list[list[str]]:
    """The captions of each record, cycled or cut to exactly ``per_item`` (records without captions are an error)."""
    out: list[list[str]] = []
    for r in records:
        caps = list(r.captions)
        if not caps:
            raise ValueError(f"{r.dataset or 'record'} {r.image_id!r}: has no caption; expected at least one")
        out.append([caps[i % len(caps)] for i in range(per_item)])
    return out


#: Words of RSICD-style captions that name no content ("an image of ... there are many ..."),
#: passed to S-CLIP's keyword extraction as dataset stop words.
RS_KEYWORD_STOP_WORDS: tuple[str, ...] = (
    "image", "picture", "photo", "aerial", "view", "scene", "many", "some", "several", "lot", "lots",
    "near", "located", "around", "surrounded", "beside", "side", "next", "middle", "area", "part",
)


def _first_caption_rows(txt_to_img: np.ndarray) -> np.ndarray:
    """Row of the first caption of each image (captions are grouped by image index)."""
    owners = np.asarray(txt_to_img)
    _, first = np.unique(owners, return_index=True)
    return first


def _labels_or_none(labels: np.ndarray | None, classes: list[str]) -> np.ndarray | None:
    if labels is None or not len(classes):
        return None
    return np.asarray([classes[int(i)] if int(i) >= 0 else "unknown" for i in labels], dtype=object)


@dataclass
class EvalData:
    """Frozen-encoder features the evaluators need (computed once by :meth:`RemoteSensingAdapter.build_task`).

    ``*_img`` are image features ``[n, D_img]`` (clean view), ``*_txt`` text features
    ``[n, D_txt]``; labels are class indices into the matching ``*_classes`` list.
    """

    test_img: np.ndarray
    test_txt: np.ndarray
    test_txt_to_img: np.ndarray
    rsicd_classes: list[str] = field(default_factory=list)
    rsicd_prompts: np.ndarray | None = None  # [C, T, D_txt]
    train_img: np.ndarray | None = None
    train_labels: np.ndarray | None = None
    test_labels: np.ndarray | None = None
    ucm_classes: list[str] = field(default_factory=list)
    ucm_img: np.ndarray | None = None
    ucm_labels: np.ndarray | None = None
    ucm_prompts: np.ndarray | None = None  # [C, T, D_txt]


class RemoteSensingAdapter:
    """Datasets, encoders and evaluators of the remote-sensing domain.

    Args:
        data_dir: folder holding ``rsicd/`` (and ``ucm/``, ``sydney/``, ``rsitmd/``), or its
            parent holding ``remote_sensing/``. Layout: :data:`DATA_INSTRUCTIONS`.
        image_encoder: ``"efficientnet_lite0"`` (offline default), a timm model name (needs
            ``image_weights``), a torchgeo weight enum or its name, or any ``FeatureEncoder``.
        text_encoder: a ``FeatureEncoder`` for text; default ``domains.text.TextEncoder()``
            (offline all-MiniLM-L6-v2).
        cache_dir: folder of the feature cache (default ``$GENTLECLIP_CACHE`` or
            ``~/.cache/gentleclip/features``).
        n_views: image views per training item (view 0 clean + ``n_views - 1`` augmentations).
        image_weights: weights file (or ``"random"``) for a timm/torchgeo ``image_encoder``.
        image_batch_size: images per forward pass (default: the encoder's, 4 on the CPU, 64 on a GPU).
        image_threads: torch threads while encoding images (None: torch's setting); see
            :class:`~domains.remote_sensing.encoders.ImageEncoder`.
        captions_per_image: text views per item (RSICD has 5 per image; others are cycled).
        templates: zero-shot prompt templates (``{}`` = readable class name).
        class_names: overrides of the readable class names (``{"Center": "city centre"}``).
        extra_text: caption-only sets used as extra unpaired text: any of ``"sydney"``,
            ``"rsitmd"``, ``"ucm"`` (default ``("sydney", "rsitmd")``; ``()`` for none).
        ucm: evaluate on UC Merced scenes (zero-shot, probe, clustering); needs ``ucm/images``.
        exclude_test_captions: leave out of the training pairs every caption equal (after
            normalising case, punctuation and white space) to a caption of an RSICD test image, and
            the training images with no caption left (RSICD writes some generic sentences for
            many images); the counts are in the task's ``info``.
        on_error: ``"raise"`` (default) or ``"skip"`` malformed records while reading.
        verify_images: decode every RSICD image when reading (about 10 s for 10,921 images), so
            that a corrupt image is a bad record (raised, or skipped with ``on_error="skip"``)
            rather than an error in the middle of feature extraction.
        chunk_size: items per cache chunk (the unit of resumption).
        seed: seed of the UCM probe split and of ``max_train`` subsampling.
        raw_items: hand out the image items and captions themselves (item arrays,
            :mod:`gentleclip.items`) where features would be, for end-to-end training.
    """

    #: the registered domain (:mod:`gentleclip.domain`) this adapter belongs to
    domain = "remote_sensing"

    def __init__(
        self,
        data_dir: str | os.PathLike,
        image_encoder: Any = DEFAULT_IMAGE_ENCODER,
        text_encoder: FeatureEncoder | None = None,
        cache_dir: str | os.PathLike | None = None,
        n_views: int = 2,
        *,
        image_weights: str | os.PathLike | None = None,
        image_batch_size: int | None = None,
        image_threads: int | None = None,
        captions_per_image: int = 5,
        templates: Sequence[str] = DEFAULT_TEMPLATES,
        class_names: dict[str, str] | None = None,
        extra_text: Sequence[str] = ("sydney", "rsitmd"),
        ucm: bool = True,
        exclude_test_captions: bool = True,
        on_error: str = "raise",
        verify_images: bool = False,
        chunk_size: int = 512,
        seed: int = 0,
        raw_items: bool = False,
    ) -> None:
        self.raw_items = bool(raw_items)
        root = Path(data_dir).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"RemoteSensingAdapter: data_dir {root} does not exist.\n{DATA_INSTRUCTIONS}")
        if not (root / "rsicd").is_dir() and (root / "remote_sensing" / "rsicd").is_dir():
            root = root / "remote_sensing"
        if n_views < 1 or captions_per_image < 1:
            raise ValueError(f"n_views and captions_per_image must be >= 1, got {n_views}, {captions_per_image}")
        unknown = [s for s in extra_text if s not in _EXTRA_TEXT_SETS]
        if unknown:
            raise ValueError(f"extra_text: unknown set(s) {unknown}; choose from {_EXTRA_TEXT_SETS}")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error: expected 'raise' or 'skip', got {on_error!r}")
        self.data_dir = root
        self.n_views = int(n_views)
        self.captions_per_image = int(captions_per_image)
        self.templates = tuple(templates)
        self.class_names = dict(class_names or {})
        self.extra_text = tuple(extra_text)
        self.use_ucm = bool(ucm)
        self.exclude_test_captions = bool(exclude_test_captions)
        self.on_error = on_error
        self.verify_images = bool(verify_images)
        self.chunk_size = int(chunk_size)
        self.seed = int(seed)
        self.cache = FeatureCache(cache_dir)
        self._image_spec = image_encoder
        self._image_weights = image_weights
        self._image_batch_size = None if image_batch_size is None else int(image_batch_size)
        self._image_threads = image_threads
        given = image_encoder if isinstance(image_encoder, FeatureEncoder) else None
        self._image_encoder: FeatureEncoder | None = given
        self._text_encoder: FeatureEncoder | None = text_encoder
        self._sets: dict[str, RecordSet] = {}
        self._rsicd_labels: dict[str, str] | None = None

    def __repr__(self) -> str:
        return f"RemoteSensingAdapter({str(self.data_dir)!r}, n_views={self.n_views}, extra_text={self.extra_text})"

    # ------------------------------------------------------------------ encoders
    @property
    def image_encoder(self) -> FeatureEncoder:
        """The image ``FeatureEncoder`` (built on first use)."""
        if self._image_encoder is None:
            self._image_encoder = ImageEncoder(
                self._image_spec, weights=self._image_weights, batch_size=self._image_batch_size,
                num_threads=self._image_threads,
            )
        return self._image_encoder

    @property
    def text_encoder(self) -> FeatureEncoder:
        """The text ``FeatureEncoder`` (default ``domains.text.TextEncoder()``, built on first use)."""
        if self._text_encoder is None:
            from domains.text import TextEncoder

            self._text_encoder = TextEncoder()
        return self._text_encoder

    def config(self) -> dict[str, Any]:
        """The resolved settings (for a benchmark's ``config.json``); builds the encoders."""
        return {
            "data_dir": str(self.data_dir),
            "image_encoder": getattr(self.image_encoder, "name", str(self._image_spec)),
            "text_encoder": getattr(self.text_encoder, "name", ""),
            "encoders": self.encoders(),
            "n_views": self.n_views,
            "captions_per_image": self.captions_per_image,
            "templates": list(self.templates),
            "class_names": dict(self.class_names),
            "extra_text": list(self.extra_text),
            "ucm": self.use_ucm,
            "on_error": self.on_error,
            "verify_images": self.verify_images,
            "cache_dir": str(self.cache.root),
            "seed": self.seed,
        }

    def encoders(self) -> dict[str, str]:
        """``{"image": identity, "text": identity}`` for results metadata."""
        return {"image": self.image_encoder.identity, "text": self.text_encoder.identity}

    # ------------------------------------------------------------------ datasets
    def _need(self, sub: str, what: str) -> Path:
        path = self.data_dir / sub
        if not path.exists():
            raise FileNotFoundError(f"RemoteSensingAdapter: {what} not found at {path}.\n{DATA_INSTRUCTIONS}")
        return path

    def rsicd_labels(self) -> dict[str, str] | None:
        """``{file name: class}`` from ``rsicd/classes``; None (with a warning) when the folder is absent."""
        if self._rsicd_labels is None:
            classes = self.data_dir / rsicd_layout.CLASSES
            if not classes.is_dir():
                warnings.warn(
                    f"{classes} not found: RSICD scene metrics (zero-shot, probe, clustering) are skipped",
                    RemoteSensingDataWarning,
                    stacklevel=3,
                )
                return None
            self._rsicd_labels = read_rsicd_class_lists(classes, on_error=self.on_error)
        return self._rsicd_labels

    def rsicd(self) -> RecordSet:
        """RSICD: 10,921 records (image, 5 captions, split, scene class from the class lists)."""
        if "rsicd" not in self._sets:
            self._need(rsicd_layout.CAPTIONS, "the RSICD caption file")
            self._need(rsicd_layout.IMAGES, "the RSICD image folder")
            self._sets["rsicd"] = read_rsicd(self.data_dir, labels=self.rsicd_labels(), require_images=True,
                                             verify=self.verify_images, on_error=self.on_error)
        return self._sets["rsicd"]

    def ucm_scenes(self) -> RecordSet:
        """UC Merced scenes present under ``ucm/images`` (label = class folder)."""
        if "ucm_scenes" not in self._sets:
            self._need("ucm/images", "the UC Merced image folder")
            self._sets["ucm_scenes"] = read_ucm_scenes(self.data_dir / "ucm", on_error=self.on_error)
        return self._sets["ucm_scenes"]

    def ucm_captions(self) -> RecordSet:
        """UCM-captions (2,100 records; those of absent images are caption-only)."""
        if "ucm" not in self._sets:
            self._need("ucm/captions", "the UCM-captions folder")
            self._sets["ucm"] = read_ucm_captions(self.data_dir / "ucm", on_error=self.on_error)
        return self._sets["ucm"]

    def sydney_captions(self) -> RecordSet:
        """Sydney-captions (caption-only records)."""
        if "sydney" not in self._sets:
            self._need("sydney/captions", "the Sydney-captions folder")
            self._sets["sydney"] = read_sydney_captions(self.data_dir / "sydney", on_error=self.on_error)
        return self._sets["sydney"]

    def rsitmd_captions(self) -> RecordSet:
        """RSITMD captions (caption-only records)."""
        if "rsitmd" not in self._sets:
            self._need("rsitmd/captions", "the RSITMD caption folder")
            self._sets["rsitmd"] = read_rsitmd_captions(self.data_dir / "rsitmd")
        return self._sets["rsitmd"]

    def extra_text_records(self, sets: Sequence[str] | None = None, max_items: int | None = None) -> RecordSet:
        """Caption groups of the extra unpaired text sets (default: ``extra_text``).

        ``max_items`` keeps a seeded random subset of that many groups (in their original order).
        """
        sets = self.extra_text if sets is None else tuple(sets)
        readers = {"sydney": self.sydney_captions, "rsitmd": self.rsitmd_captions, "ucm": self.ucm_captions}
        out = RecordSet([], "extra_text")
        for s in sets:
            if s not in readers:
                raise ValueError(f"extra_text: unknown set {s!r}; choose from {_EXTRA_TEXT_SETS}")
            out = out + readers[s]()
        out.name = "+".join(sets) or "none"
        if max_items is not None and max_items < len(out):
            keep = np.sort(np.random.default_rng(self.seed).choice(len(out), size=max_items, replace=False))
            out = RecordSet([out[int(i)] for i in keep], out.name, out.report)
        return out

    # ------------------------------------------------------------------ features
    def image_features(self, items: Sequence[Any], n_views: int = 1, desc: str | None = None) -> np.ndarray:
        """Image features ``[N, V, D]`` via the feature cache (computed once)."""
        items = list(items)
        if self.raw_items:  # end-to-end training: the image items themselves where the features would be
            return item_array(items, n_views)
        enc = self.image_encoder
        fp = image_fingerprint(items) if items else None
        return self.cache.get(enc, items, n_views=n_views, fingerprint=fp, chunk_size=self.chunk_size, desc=desc)

    def text_features(self, texts: Sequence[str], desc: str | None = None) -> np.ndarray:
        """Text features ``[N, D]`` (clean view) via the feature cache.

        Each distinct text is encoded once (RSICD repeats many captions: its 39,310 train
        captions hold 12,408 distinct sentences) and the rows are copied back in input order.
        """
        texts = list(texts)
        if self.raw_items:
            return item_array(texts, None)
        first: dict[str, int] = {}
        inverse = np.fromiter((first.setdefault(t, len(first)) for t in texts), dtype=np.int64, count=len(texts))
        unique = list(first)
        feats = self.cache.get(self.text_encoder, unique, n_views=1, chunk_size=max(self.chunk_size, 2048), desc=desc)
        if not len(unique):
            return np.zeros((0, self.text_encoder.dim), dtype=np.float32)
        return np.asarray(feats[:, 0])[inverse]

    def caption_features(self, records: Iterable[Any], desc: str | None = None) -> np.ndarray:
        """``[N, captions_per_image, D]``: the captions of each record as text views."""
        return self.group_features(caption_groups(records, self.captions_per_image), desc=desc)

    def group_features(self, groups: Sequence[Sequence[str]], desc: str | None = None) -> np.ndarray:
        """``[N, captions_per_image, D]``: each group of captions, cycled or cut to ``captions_per_image``."""
        per = self.captions_per_image
        groups = [[g[i % len(g)] for i in range(per)] for g in groups]
        flat = [c for g in groups for c in g]
        feats = self.text_features(flat, desc=desc)
        return feats.reshape(len(groups), self.captions_per_image, -1)

    def prompt_features(self, classes: Sequence[str]) -> np.ndarray:
        """``[C, T, D]`` text features of ``template.format(readable class)`` for every class and template."""
        prompts = class_prompts(classes, self.templates, self.class_names)
        feats = self.text_features(prompts, desc="class prompts")
        return feats.reshape(len(classes), len(self.templates), -1)

    # ------------------------------------------------------------------ task
    def train_records(self, max_train: int | None = None, splits: Sequence[str] = ("train",)) -> RecordSet:
        """RSICD records of ``splits`` (optionally a seeded subset of ``max_train``, kept in file order)."""
        recs = self.rsicd().split(*splits)
        if max_train is not None and max_train < len(recs):
            rng = np.random.default_rng(self.seed)
            keep = np.sort(rng.choice(len(recs), size=max_train, replace=False))
            recs = RecordSet([recs[int(i)] for i in keep], recs.name, recs.report)
        return recs

    def eval_data(self, train: RecordSet | None = None, train_img: np.ndarray | None = None) -> EvalData:
        """Features of everything the evaluators use (RSICD test split, UCM scenes, class prompts)."""
        rsicd = self.rsicd()
        test = rsicd.split("test")
        test_img = np.asarray(self.image_features(test.images, 1, desc="RSICD test images")[:, 0])
        caps = [list(r.captions) for r in test]
        test_txt = self.text_features([c for cs in caps for c in cs], desc="RSICD test captions")
        txt_to_img = np.repeat(np.arange(len(test)), [len(cs) for cs in caps])
        ev = EvalData(test_img=test_img, test_txt=test_txt, test_txt_to_img=txt_to_img)
        if self.rsicd_labels() is not None and all(r.label is not None for r in test):
            classes = rsicd.class_names()
            index = {c: i for i, c in enumerate(classes)}
            ev.rsicd_classes = classes
            ev.rsicd_prompts = self.prompt_features(classes)
            ev.test_labels = np.array([index[r.label] for r in test])
            if train is not None and train_img is not None and all(r.label in index for r in train):
                ev.train_img = np.asarray(train_img)
                ev.train_labels = np.array([index[r.label] for r in train])
        if self.use_ucm:
            ucm = self.ucm_scenes()
            classes = ucm.class_names()
            index = {c: i for i, c in enumerate(classes)}
            ev.ucm_classes = classes
            ev.ucm_img = np.asarray(self.image_features(ucm.images, 1, desc="UCM images")[:, 0])
            ev.ucm_labels = np.array([index[r.label] for r in ucm])
            ev.ucm_prompts = self.prompt_features(classes)
        return ev

    def training_text(self, max_train: int | None = None, extra_text: Sequence[str] | None = None,
                      train_splits: Sequence[str] = ("train",), max_extra_text: int | None = None) -> TrainingText:
        """The texts that may enter training, with no features computed (see :class:`TrainingText`).

        Training captions equal to an RSICD test caption are left out (``exclude_test_captions``),
        and so are the training images left without a caption; extra caption groups go through
        :func:`gentleclip.leakage.filter_unpaired_groups` against every RSICD caption of every split.
        """
        all_train = self.train_records(max_train, train_splits)
        if not len(all_train):
            raise ValueError(f"RSICD split(s) {list(train_splits)} hold no images")
        rsicd = self.rsicd()
        held = {normalize_text(c) for r in rsicd.split("test") for c in r.captions}
        keep, groups, n_removed = [], [], 0
        for i, r in enumerate(all_train):
            caps = [c for c in r.captions if normalize_text(c) not in held] if self.exclude_test_captions \
                else list(r.captions)
            n_removed += len(r.captions) - len(caps)
            if caps:
                keep.append(i)
                groups.append(caps)
        extra_recs = self.extra_text_records(extra_text, max_extra_text)
        kept, _, leak = filter_unpaired_groups([list(r.captions) for r in extra_recs],
                                               [list(r.captions) for r in rsicd])
        report = {"train_caption_filter": {"exclude_test_captions": self.exclude_test_captions,
                                           "n_images": len(all_train), "n_captions_removed_equal_to_test": n_removed,
                                           "n_images_left_out": len(all_train) - len(keep)},
                  "extra_text": extra_recs.name, "extra_text_filter": leak}
        records = RecordSet([all_train[i] for i in keep], all_train.name, all_train.report)
        return TrainingText(records, np.asarray(keep, dtype=np.int64), groups, kept, extra_recs.name, report)

    def build_task(
        self,
        max_train: int | None = None,
        extra_text: Sequence[str] | None = None,
        train_splits: Sequence[str] = ("train",),
        n_views: int | None = None,
        max_extra_text: int | None = None,
    ) -> AlignmentTask:
        """The RSICD :class:`gentleclip.task.AlignmentTask` (see the module docstring).

        Args:
            max_train: use a seeded subset of this many training images (quick runs).
            extra_text: override the adapter's ``extra_text`` sets for this task.
            train_splits: RSICD splits used for training (default the ``train`` split).
            n_views: override the adapter's ``n_views``.
            max_extra_text: keep a seeded subset of this many extra caption groups (the default
                Sydney + RSITMD hold 5,294 groups = 26,470 captions, 22,829 distinct).
        """
        text = self.training_text(max_train, extra_text, train_splits, max_extra_text)
        train, keep = text.records, text.keep
        v = self.n_views if n_views is None else int(n_views)
        train_a = self.image_features(self.train_records(max_train, train_splits).images, v,
                                      desc=f"RSICD {'+'.join(train_splits)} images")
        if len(keep) < len(train_a):  # rows of the cached features of the whole split
            train_a = np.ascontiguousarray(train_a[keep])
        train_b = self.group_features(text.train_groups, desc=f"RSICD {'+'.join(train_splits)} captions")
        extra = self.group_features(text.extra_groups, desc=f"extra text ({text.extra_name})") if text.extra_groups \
            else None
        ev = self.eval_data(train, np.asarray(train_a[:, 0]))
        val = self.rsicd().split("val")
        validation = None
        if len(val) >= 2:
            validation = ValidationSet(
                "mean_recall", np.asarray(self.image_features(val.images, 1, desc="RSICD val images")[:, 0]),
                self.caption_features(val, desc="RSICD val captions"),
                source=f"RSICD val split ({len(val)} images x {self.captions_per_image} captions)")
        info = {"n_train": len(train), "n_val": len(val), "n_test": len(self.rsicd().split("test")),
                **text.report, "validation": None if validation is None else validation.source}
        return AlignmentTask(
            name="rsicd_image_caption",
            dataset="rsicd",
            train_a=train_a,
            train_b=train_b,
            evaluate=lambda embed_a, embed_b: self.evaluate(embed_a, embed_b, ev),
            encoders=self.encoders(),
            extra_unpaired_b=extra,
            modality_names=("image", "text"),
            b_texts=text.train_groups,
            encode_b_texts=lambda texts: np.asarray(self.text_features(list(texts), desc="keywords")),
            keyword_stop_words=RS_KEYWORD_STOP_WORDS,
            joint_space=(ev.test_img, ev.test_txt[_first_caption_rows(ev.test_txt_to_img)],
                         _labels_or_none(ev.test_labels, ev.rsicd_classes)),
            validation=validation,
            info=info,
        )

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, embed_a: EmbedFn, embed_b: EmbedFn, data: EvalData | None = None) -> list[dict]:
        """Score a joint space (``embed_a``: image features -> joint, ``embed_b``: text features -> joint).

        Returns rows ``{"task", "dataset", "metric", "value"}`` (see the module docstring).
        """
        from gentleclip.evaluate import (
            clustering_metrics,
            gap_metrics,
            joint_clustering_metrics,
            linear_probe_accuracy,
            retrieval_metrics,
            zero_shot_metrics,
        )

        ev = data if data is not None else self.eval_data()
        rows: list[dict] = []

        def add(task: str, dataset: str, metrics: dict[str, float]) -> None:
            rows.extend({"task": task, "dataset": dataset, "metric": k, "value": float(v)} for k, v in metrics.items())

        def embed_prompts(fn: EmbedFn, prompts: np.ndarray) -> np.ndarray:
            c, t, d = prompts.shape
            return np.asarray(fn(prompts.reshape(c * t, d))).reshape(c, t, -1)

        img = np.asarray(embed_a(ev.test_img))
        txt = np.asarray(embed_b(ev.test_txt))
        add("retrieval", "rsicd", retrieval_metrics(img, txt, ev.test_txt_to_img, names=("i2t", "t2i")))
        first = np.unique(ev.test_txt_to_img, return_index=True)[1]
        add("gap", "rsicd", gap_metrics(img, txt[first], paired=True, seed=self.seed))
        if ev.rsicd_prompts is not None and ev.test_labels is not None:
            add("zeroshot", "rsicd", zero_shot_metrics(img, ev.test_labels, embed_prompts(embed_b, ev.rsicd_prompts)))
            if len(np.unique(ev.test_labels)) > 1:
                add("clustering", "rsicd", {
                    **clustering_metrics(img, ev.test_labels, seed=self.seed),
                    **joint_clustering_metrics(img, txt[first], ev.test_labels, seed=self.seed, per_modality=False)})
            if ev.train_img is not None and ev.train_labels is not None and len(np.unique(ev.train_labels)) > 1:
                tr = np.asarray(embed_a(ev.train_img))
                add("linear_probe", "rsicd",
                    {"linear_probe_acc": linear_probe_accuracy(tr, ev.train_labels, img, ev.test_labels,
                                                               seed=self.seed)})
        if ev.ucm_img is not None and ev.ucm_labels is not None and ev.ucm_prompts is not None:
            u = np.asarray(embed_a(ev.ucm_img))
            add("zeroshot", "ucm", zero_shot_metrics(u, ev.ucm_labels, embed_prompts(embed_b, ev.ucm_prompts)))
            if len(np.unique(ev.ucm_labels)) > 1:
                add("clustering", "ucm", clustering_metrics(u, ev.ucm_labels, seed=self.seed))
                tr_idx, te_idx = _stratified_halves(ev.ucm_labels, self.seed)
                if len(tr_idx) and len(te_idx) and len(np.unique(ev.ucm_labels[tr_idx])) > 1:
                    add("linear_probe", "ucm", {"linear_probe_acc": linear_probe_accuracy(
                        u[tr_idx], ev.ucm_labels[tr_idx], u[te_idx], ev.ucm_labels[te_idx], seed=self.seed)})
        return rows


@dataclass
class TrainingText:
    """What :meth:`RemoteSensingAdapter.training_text` returns.

    ``records``: the RSICD training records that keep at least one caption; ``keep``: their rows in
    the whole training split; ``train_groups``: their captions (test captions removed);
    ``extra_groups``: the extra caption groups that passed the leak filter; ``report``: the counts.
    """

    records: RecordSet
    keep: np.ndarray
    train_groups: list[list[str]]
    extra_groups: list[list[str]]
    extra_name: str
    report: dict[str, Any]


def _stratified_halves(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per class, a seeded random half of the items for training and the rest for testing."""
    rng = np.random.default_rng(seed)
    tr: list[int] = []
    te: list[int] = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = len(idx) // 2
        tr.extend(idx[:k].tolist())
        te.extend(idx[k:].tolist())
    return np.sort(np.array(tr, dtype=np.int64)), np.sort(np.array(te, dtype=np.int64))

